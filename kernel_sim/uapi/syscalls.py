"""The Syscalls seam: the system calls userland (loader, runtime) makes, in Linux's binary ABI.

Two objects implement it: the embedded simulated kernel and ctypes calls into the real Linux
kernel. Both take the same bytes and give the same answers; failures are OSError with the
Linux errno, as Python's ``os`` functions raise them.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

# A writable bytes-like object holding a Linux layout: bytearray, memoryview or ctypes object.
Attr = Any
# What mmap returns: an object with the buffer protocol (mmap.mmap or equivalent), writable.
MappedBuffer = Any


class Utsname(NamedTuple):
    sysname: str
    nodename: str
    release: str
    version: str
    machine: str


@runtime_checkable
class Syscalls(Protocol):
    """What a kernel offers userland. ``kind`` is "sim" or "linux"."""

    kind: str

    def bpf(self, cmd: int, attr: Attr) -> int: ...

    def perf_event_open(self, attr: Attr, pid: int, cpu: int, group_fd: int, flags: int) -> int: ...

    def ioctl(self, fd: int, request: int, arg: int = 0) -> int: ...

    def mmap(self, fd: int, length: int, prot: int, flags: int, offset: int) -> MappedBuffer: ...

    def munmap(self, buf: MappedBuffer) -> None: ...

    def openat(self, path: str, flags: int, mode: int = 0) -> int: ...

    def read(self, fd: int, n: int) -> bytes: ...

    def write(self, fd: int, data: bytes) -> int: ...

    def close(self, fd: int) -> None: ...

    def unlink(self, path: str) -> None: ...

    def uname(self) -> Utsname: ...

    def getpid(self) -> int: ...

    def eventfd(self, initval: int, flags: int) -> int: ...

    def epoll_create1(self, flags: int) -> int: ...

    def epoll_ctl(self, epfd: int, op: int, fd: int, events: int) -> None: ...

    def epoll_wait(self, epfd: int, maxevents: int, timeout_ms: int) -> list[tuple[int, int]]: ...

    def poll_handle(self, fd: int) -> int:
        """A real OS descriptor that is readable whenever ``fd`` is (what trio waits on)."""
        ...
