"""Perf event files: BPF output buffers, tracepoint events and kprobe events.

A perf event is a file with ioctls (ENABLE, DISABLE, SET_BPF, ID, ...), poll and, for BPF
output events, mmap of its ring buffer. Tracing events (tracepoints, kprobes) run the BPF
program attached with PERF_EVENT_IOC_SET_BPF (or a perf link) when they fire and are enabled.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ..fs.file import File, oserror
from ..mm import PAGE_SIZE
from ..uapi.epoll import EPOLLHUP, EPOLLIN, EPOLLRDNORM, MAP_SHARED
from ..uapi.perf import (
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_ID,
    PERF_EVENT_IOC_PAUSE_OUTPUT,
    PERF_EVENT_IOC_RESET,
    PERF_EVENT_IOC_SET_BPF,
    PerfEventAttr,
)
from ..usermem import copy_to_user
from .ring import PerfRingBuffer

if TYPE_CHECKING:
    from . import PerfSubsystem

_U64 = struct.Struct("<Q")


class PerfEvent(File):
    """What every perf event file has: an id, an enable state, the common ioctls."""

    name = "[perf_event]"
    is_perf_event = True
    pollable = True

    def __init__(self, subsys: PerfSubsystem, attr: PerfEventAttr, pid: int, cpu: int) -> None:
        super().__init__()
        self.subsys = subsys
        self.attr = attr
        self.pid = pid
        self.cpu = cpu
        self.id = subsys.next_event_id()
        self.enabled = not attr.disabled
        self.count = 0

    def ioctl(self, request: int, arg: int) -> int:
        if request == PERF_EVENT_IOC_ENABLE:
            self.enabled = True
        elif request == PERF_EVENT_IOC_DISABLE:
            self.enabled = False
        elif request == PERF_EVENT_IOC_RESET:
            self.count = 0
        elif request == PERF_EVENT_IOC_ID:
            copy_to_user(arg, _U64.pack(self.id))
        elif request == PERF_EVENT_IOC_SET_BPF:
            self.set_bpf(arg)
        elif request == PERF_EVENT_IOC_PAUSE_OUTPUT:
            raise oserror(errno.EINVAL)
        else:
            raise oserror(errno.ENOTTY)
        return 0

    def set_bpf(self, prog_fd: int) -> None:
        # Non-tracing events take only BPF_PROG_TYPE_PERF_EVENT programs; kernel_sim has no
        # sampling events to run them on.
        self.subsys.kernel_prog_from_fd(prog_fd)
        raise oserror(errno.EINVAL)

    def read(self, n: int) -> bytes:
        if n < 8:
            raise oserror(errno.ENOSPC)
        return _U64.pack(self.count)

    def poll(self) -> int:
        return EPOLLHUP  # Linux's perf_poll on an event without a ring buffer


class BpfOutputEvent(PerfEvent):
    """PERF_TYPE_SOFTWARE / PERF_COUNT_SW_BPF_OUTPUT: the target of bpf_perf_event_output."""

    def __init__(self, subsys: PerfSubsystem, attr: PerfEventAttr, pid: int, cpu: int) -> None:
        super().__init__(subsys, attr, pid, cpu)
        self.rb: PerfRingBuffer | None = None

    def mmap(self, length: int, prot: int, flags: int, offset: int):
        if offset != 0 or not flags & MAP_SHARED or length % PAGE_SIZE:
            raise oserror(errno.EINVAL)
        nr_pages = length // PAGE_SIZE - 1
        if nr_pages & (nr_pages - 1):
            raise oserror(errno.EINVAL)  # not 1 + 2^n pages
        if self.rb is None:
            wakeup = 0 if self.attr.watermark else self.attr.wakeup_events
            watermark = self.attr.wakeup_events if self.attr.watermark else 0
            self.rb = PerfRingBuffer(nr_pages, self.id, wakeup_events=wakeup, watermark=watermark,
                                     wake=lambda: self.wq.wake(EPOLLIN | EPOLLRDNORM))
        return self.rb.map_user(length, prot)

    def output(self, raw: bytes) -> int:
        """bpf_perf_event_output's write; 0 or a negative errno as the helper returns it."""
        if not self.enabled or self.rb is None:
            return -errno.ENOENT if self.rb is None else -errno.EOPNOTSUPP
        self.count += 1
        return self.rb.output(raw)

    def poll(self) -> int:
        if self.rb is None:
            return EPOLLHUP
        return EPOLLIN | EPOLLRDNORM if self.rb.readable() else 0

    def release(self) -> None:
        if self.rb is not None:
            self.rb.close()
            self.rb = None


class TracingEvent(PerfEvent):
    """A tracepoint or kprobe event: runs its BPF program when it fires while enabled."""

    prog_type: int = -1

    def __init__(self, subsys: PerfSubsystem, attr: PerfEventAttr, pid: int, cpu: int) -> None:
        super().__init__(subsys, attr, pid, cpu)
        self.prog = None
        self.link = None

    def set_bpf(self, prog_fd: int) -> None:
        prog = self.subsys.kernel_prog_from_fd(prog_fd)
        self.attach_prog(prog)

    def attach_prog(self, prog) -> None:
        if prog.prog_type != self.prog_type:
            raise oserror(errno.EINVAL)
        if self.prog is not None or any(ev.prog is prog for ev in self.hook_events()):
            raise oserror(errno.EEXIST)  # Linux: one program per event, once per hook
        self.prog = prog
        prog.refs += 1

    def hook_events(self) -> list[TracingEvent]:
        """The events sharing this one's hook (tracepoint or probe point)."""
        return [self]

    def detach_prog(self) -> None:
        if self.prog is not None:
            self.prog.refs -= 1
            self.prog = None

    def fire(self, ctx: bytes | bytearray) -> int | None:
        """Run the attached program on ctx; returns its r0 (None if nothing ran)."""
        if not self.enabled or self.prog is None:
            return None
        self.count += 1
        return self.prog.run_ctx(ctx)

    def release(self) -> None:
        self.detach_prog()
        self.unregister()

    def unregister(self) -> None:
        """Take the event off its hook (tracepoint list, kprobe)."""
