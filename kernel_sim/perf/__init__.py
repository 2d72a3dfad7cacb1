"""perf_event_open(2) in kernel_sim: BPF output buffers, tracepoints and kprobes.

The kprobe PMU's type is what /sys/bus/event_source/devices/kprobe/type says (6, PERF_TYPE_MAX,
as in the seed kernels): config1 points at the symbol name, config2 is the offset, config bit 0
asks for a kretprobe.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
from typing import TYPE_CHECKING

from ..fs.file import oserror
from ..task import current
from ..uapi.epoll import PAGE_SIZE
from ..uapi.perf import (
    PERF_ATTR_SIZE_VER0,
    PERF_FLAG_FD_CLOEXEC,
    PERF_FLAG_FD_NO_GROUP,
    PERF_FLAG_FD_OUTPUT,
    PERF_FLAG_PID_CGROUP,
    PerfEventAttr,
    PerfSwId,
    PerfType,
)
from .events import BpfOutputEvent, PerfEvent

if TYPE_CHECKING:
    from ..kernel import Kernel

_FLAGS = PERF_FLAG_FD_NO_GROUP | PERF_FLAG_FD_OUTPUT | PERF_FLAG_PID_CGROUP | PERF_FLAG_FD_CLOEXEC
ATTR_SIZE = ctypes.sizeof(PerfEventAttr)


class PerfSubsystem:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._ids = itertools.count(1)
        # PMU type -> factory(subsys, attr, pid, cpu) for tracing PMUs (tracepoint, kprobe).
        self.pmus: dict[int, object] = {}
        from ..kernel import KPROBE_PMU_TYPE
        from .kprobe_event import open_kprobe_event

        self.pmus[KPROBE_PMU_TYPE] = open_kprobe_event

    def next_event_id(self) -> int:
        return next(self._ids)

    def kernel_prog_from_fd(self, fd: int):
        """The BpfProg behind a program fd of the current task (EBADF / EINVAL as Linux)."""
        file = current().files.get(fd)
        prog = getattr(file, "prog", None)
        if prog is None or not getattr(file, "is_bpf_prog", False):
            raise oserror(errno.EINVAL)
        return prog

    @staticmethod
    def copy_attr(attr) -> PerfEventAttr:
        """Linux's perf_copy_attr: size rules, zero tail, E2BIG with the size written back."""
        view = memoryview(attr).cast("B")
        size = int.from_bytes(view[4:8], "little") if len(view) >= 8 else 0
        if size == 0:
            size = PERF_ATTR_SIZE_VER0
        too_big = size > PAGE_SIZE or size < PERF_ATTR_SIZE_VER0
        if not too_big and size > ATTR_SIZE and any(view[ATTR_SIZE:size]):
            too_big = True
        if too_big:
            if len(view) >= 8:
                view[4:8] = ATTR_SIZE.to_bytes(4, "little")
            raise oserror(errno.E2BIG)
        parsed = PerfEventAttr.from_attr(view[: min(size, len(view), ATTR_SIZE)])
        parsed.size = size
        return parsed

    def sys_perf_event_open(self, attr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        if flags & ~_FLAGS:
            raise oserror(errno.EINVAL)
        parsed = self.copy_attr(attr)
        if (pid == -1 and cpu == -1) or cpu < -1 or cpu >= self.kernel.ncpus:
            raise oserror(errno.EINVAL)
        if pid > 0 and pid not in self.kernel.tasks:
            raise oserror(errno.ESRCH)
        task = current()
        if group_fd != -1:
            group = task.files.get(group_fd)
            if not getattr(group, "is_perf_event", False):
                raise oserror(errno.EINVAL)
        event = self._create(parsed, pid, cpu)
        return task.files.install(event)

    def _create(self, attr: PerfEventAttr, pid: int, cpu: int) -> PerfEvent:
        if attr.type == PerfType.SOFTWARE:
            if attr.config >= len(PerfSwId):
                raise oserror(errno.ENOENT)
            if attr.config == PerfSwId.BPF_OUTPUT:
                return BpfOutputEvent(self, attr, pid, cpu)
            return PerfEvent(self, attr, pid, cpu)
        factory = self.pmus.get(attr.type)
        if factory is None:
            raise oserror(errno.ENOENT)
        return factory(self, attr, pid, cpu)
