"""The kprobe PMU: perf_event_open(type = /sys/bus/event_source/devices/kprobe/type) -> a kprobe event.

As Linux's perf_kprobe_init: config1 (kprobe_func) points at the symbol name, read with
strncpy_from_user up to KSYM_NAME_LEN (no NUL within it: E2BIG); an empty name means config2 is
a bare address (kprobe_addr), otherwise config2 is the offset (probe_offset); config bit 0
(format/retprobe) asks for a kretprobe. The probe is registered when the event is created and
unregistered when its file is released; ENABLE / DISABLE gate whether the BPF program runs.
Errors as Linux: EACCES without CAP_PERFMON, ENOENT for an unknown symbol, EILSEQ for an offset
inside an instruction, EINVAL for notrace functions and kretprobes off a function entry.

The BPF program runs from the kprobe's pre-handler (kretprobe: the return handler) on the
trapframe laid out as the arch's struct pt_regs — the ctx libbpf's PT_REGS_* macros read.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..fs.file import oserror
from ..kprobe.subsystem import KSYM_NAME_LEN
from ..task import current
from ..uapi.bpf import ProgType
from ..uapi.perf import PerfEventAttr
from ..usermem import strncpy_from_user
from .events import TracingEvent

if TYPE_CHECKING:
    from . import PerfSubsystem

PERF_PROBE_CONFIG_IS_RETPROBE = 1


class KprobePerfEvent(TracingEvent):
    """A perf event on a kprobe or kretprobe (the seed's KprobePerfEvent)."""

    prog_type = ProgType.KPROBE

    def __init__(self, subsys: PerfSubsystem, attr: PerfEventAttr, pid: int, cpu: int, symbol: str | None,
                 offset: int, addr: int, retprobe: bool) -> None:
        super().__init__(subsys, attr, pid, cpu)
        kprobes = subsys.kernel.kprobes
        self.kprobes = kprobes
        self.symbol = symbol
        self.retprobe = retprobe
        if retprobe:
            self.probe = kprobes.register_kretprobe(symbol, handler=self._on_return, offset=offset, addr=addr)
        else:
            self.probe = kprobes.register_kprobe(symbol, offset, pre_handler=self._on_hit, addr=addr)

    def _on_hit(self, _kp, frame) -> None:
        if self.enabled and self.prog is not None:
            self.fire(frame.ctx_bytes())

    def _on_return(self, _ri, frame) -> None:
        if self.enabled and self.prog is not None:
            self.fire(frame.ctx_bytes())

    @property
    def nmissed(self) -> int:
        return self.probe.nmissed if self.probe is not None else 0

    def unregister(self) -> None:
        if self.probe is None:
            return
        if self.retprobe:
            self.kprobes.unregister_kretprobe(self.probe)
        else:
            self.kprobes.unregister_kprobe(self.probe)
        self.probe = None


def open_kprobe_event(subsys: PerfSubsystem, attr: PerfEventAttr, pid: int, cpu: int) -> KprobePerfEvent:
    """The kprobe PMU's event_init (perf_kprobe_event_init + perf_kprobe_init)."""
    task = current()
    if task is not None and task.uid != 0:
        raise oserror(errno.EACCES)  # !perfmon_capable()
    retprobe = bool(attr.config & PERF_PROBE_CONFIG_IS_RETPROBE)
    symbol: str | None = None
    if attr.config1:
        raw = strncpy_from_user(attr.config1, KSYM_NAME_LEN)
        if len(raw) >= KSYM_NAME_LEN:
            raise oserror(errno.E2BIG)  # strndup_user's EINVAL, reported as E2BIG
        symbol = raw.decode(errors="replace") or None
    if symbol is None:
        if not attr.config2:
            raise oserror(errno.EINVAL)
        return KprobePerfEvent(subsys, attr, pid, cpu, None, 0, attr.config2, retprobe)
    return KprobePerfEvent(subsys, attr, pid, cpu, symbol, attr.config2, 0, retprobe)
