"""LinuxSyscalls: the Syscalls seam over this machine's real kernel, through ctypes.

The same bytes the loader gives kernel_sim go to Linux unchanged; errors come back as OSError
with the errno Linux set.
"""

from __future__ import annotations

import ctypes
import errno
import mmap as _mmap
import os
import platform

from kernel_sim.uapi.epoll import EP_MAX_EVENTS, EPOLL_EVENT
from kernel_sim.uapi.syscalls import Utsname

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
_libc.ioctl.restype = ctypes.c_int
_libc.epoll_create1.argtypes = [ctypes.c_int]
_libc.epoll_ctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_libc.epoll_wait.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]

# System call numbers per host machine.
_NR = {
    "x86_64": {"bpf": 321, "perf_event_open": 298},
    "aarch64": {"bpf": 280, "perf_event_open": 241},
    "riscv64": {"bpf": 280, "perf_event_open": 241},
    "loongarch64": {"bpf": 280, "perf_event_open": 241},
}[platform.machine()]


def _raise() -> None:
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code))


def buffer_address(obj) -> tuple[int, int, object]:
    """(address, size, keep-alive) of a writable bytes-like or ctypes object."""
    if isinstance(obj, ctypes._SimpleCData | ctypes.Structure | ctypes.Union | ctypes.Array):
        return ctypes.addressof(obj), ctypes.sizeof(obj), obj
    view = memoryview(obj).cast("B")
    if view.readonly:
        raise OSError(errno.EFAULT, "attr buffer is read-only")
    if len(view) == 0:
        return 0, 0, view
    holder = (ctypes.c_char * len(view)).from_buffer(view)
    return ctypes.addressof(holder), len(view), holder


class LinuxSyscalls:
    kind = "linux"

    def bpf(self, cmd: int, attr) -> int:
        addr, size, _keep = buffer_address(attr)
        ret = _libc.syscall(ctypes.c_long(_NR["bpf"]), ctypes.c_long(cmd), ctypes.c_void_p(addr),
                            ctypes.c_ulong(size))
        if ret < 0:
            _raise()
        return ret

    def perf_event_open(self, attr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        addr, _size, _keep = buffer_address(attr)
        ret = _libc.syscall(ctypes.c_long(_NR["perf_event_open"]), ctypes.c_void_p(addr),
                            ctypes.c_int(pid), ctypes.c_int(cpu), ctypes.c_int(group_fd),
                            ctypes.c_ulong(flags))
        if ret < 0:
            _raise()
        return ret

    def ioctl(self, fd: int, request: int, arg: int = 0) -> int:
        ret = _libc.ioctl(fd, request, arg)
        if ret < 0:
            _raise()
        return ret

    def mmap(self, fd: int, length: int, prot: int, flags: int, offset: int):
        return _mmap.mmap(fd, length, flags=flags, prot=prot, offset=offset)

    def munmap(self, buf) -> None:
        buf.close()

    def openat(self, path: str, flags: int, mode: int = 0) -> int:
        return os.open(path, flags, mode)

    def read(self, fd: int, n: int) -> bytes:
        return os.read(fd, n)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def close(self, fd: int) -> None:
        os.close(fd)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def uname(self) -> Utsname:
        u = os.uname()
        return Utsname(u.sysname, u.nodename, u.release, u.version, u.machine)

    def getpid(self) -> int:
        return os.getpid()

    def eventfd(self, initval: int, flags: int) -> int:
        return os.eventfd(initval, flags)

    def epoll_create1(self, flags: int) -> int:
        fd = _libc.epoll_create1(flags)
        if fd < 0:
            _raise()
        return fd

    def epoll_ctl(self, epfd: int, op: int, fd: int, events: int) -> None:
        ev = ctypes.create_string_buffer(EPOLL_EVENT.pack(events & 0xFFFFFFFF, fd), EPOLL_EVENT.size)
        if _libc.epoll_ctl(epfd, op, fd, ev) < 0:
            _raise()

    def epoll_wait(self, epfd: int, maxevents: int, timeout_ms: int) -> list[tuple[int, int]]:
        room = min(max(maxevents, 1), 4096) if 0 < maxevents <= EP_MAX_EVENTS else 1
        buf = ctypes.create_string_buffer(room * EPOLL_EVENT.size)
        ask = min(maxevents, room) if 0 < maxevents <= EP_MAX_EVENTS else maxevents
        while True:
            n = _libc.epoll_wait(epfd, buf, ask, timeout_ms)
            if n >= 0:
                break
            if ctypes.get_errno() != errno.EINTR:
                _raise()
        out = []
        for i in range(n):
            events, data = EPOLL_EVENT.unpack_from(buf, i * EPOLL_EVENT.size)
            out.append((data, events))
        return out

    def poll_handle(self, fd: int) -> int:
        return fd

    def close_all(self) -> None:
        """Nothing to do: descriptors of the real process are closed by their owners."""
