"""Kprobes for kernel_sim, with the seed kprobe crate's names (see core.py for the trap sequence)."""

from __future__ import annotations

from ..arch import ProbeArgs
from .core import (
    CallBackFunc,
    Kprobe,
    KprobeAuxiliaryOps,
    KprobeBuilder,
    KprobeManager,
    KprobePoint,
    KprobePointList,
    kprobe_handler_from_break,
    kprobe_handler_from_debug,
)
from .executor import Executor, KernelOops
from .kretprobe import Kretprobe, KretprobeInstance
from .subsystem import Kprobes, SimKprobeAuxiliaryOps

__all__ = ["CallBackFunc", "Executor", "KernelOops", "Kprobe", "KprobeAuxiliaryOps", "KprobeBuilder",
           "KprobeManager", "KprobePoint", "KprobePointList", "Kprobes", "Kretprobe", "KretprobeInstance",
           "ProbeArgs", "SimKprobeAuxiliaryOps", "kprobe_handler_from_break",
           "kprobe_handler_from_debug"]
