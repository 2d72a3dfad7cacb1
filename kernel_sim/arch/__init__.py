"""The simulated architectures: x86_64, riscv64, loongarch64 (see base.Arch)."""

from __future__ import annotations

from .base import TRAP_BREAK, TRAP_DEBUG, TRAP_NONE, Arch, IllegalInstruction, Insn, ProbeArgs, Trapframe
from .loongarch64 import Loongarch64
from .riscv64 import Riscv64
from .x86_64 import X86_64

ARCHES: dict[str, Arch] = {a.name: a for a in (X86_64(), Riscv64(), Loongarch64())}


def get_arch(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise ValueError(f"unknown arch {name!r}: choose one of {', '.join(ARCHES)}") from None


__all__ = ["ARCHES", "Arch", "IllegalInstruction", "Insn", "ProbeArgs", "TRAP_BREAK", "TRAP_DEBUG",
           "TRAP_NONE", "Trapframe", "get_arch"]
