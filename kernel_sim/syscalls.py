"""SimSyscalls: the Syscalls seam into the simulated kernel, for one userland process.

Each call runs as that process (``current()``) and gives Linux's answers and errnos. The calls
a process makes with registers and pointers (bpf, perf_event_open, ioctl, openat, read, write,
close, getpid) enter through ``Kernel.syscall`` like any task's, so the loader's own syscalls
hit the syscall tracepoints and kprobes on __x64_sys_bpf, vfs_read, ...; the ones whose results
are Python objects (mmap, the epoll and eventfd calls, uname) are served directly. For the
reactor, ``poll_handle(fd)`` mirrors a simulated file's readability onto a real OS eventfd
that trio can wait on.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading

from .fs.epoll import EpollFile
from .fs.eventfd import EventFd
from .fs.file import File, oserror
from .kernel import Kernel
from .syscall_entry import AT_FDCWD
from .task import Task, running
from .uapi.epoll import EP_MAX_EVENTS, EPOLL_CLOEXEC, EPOLLIN
from .uapi.syscalls import Utsname


class PollMirror:
    """A real eventfd that is readable exactly while a simulated file is (EPOLLIN)."""

    def __init__(self, file: File) -> None:
        self.file = file
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._set = False
        self._lock = threading.Lock()
        file.wq.add(self._on_wake)
        self.sync()

    def _on_wake(self, _mask: int) -> None:
        self.sync()

    def sync(self) -> None:
        with self._lock:
            if self.fd < 0:
                return
            ready = bool(self.file.poll() & EPOLLIN)
            if ready and not self._set:
                os.eventfd_write(self.fd, 1)
                self._set = True
            elif not ready and self._set:
                try:
                    os.eventfd_read(self.fd)
                except BlockingIOError:
                    pass
                self._set = False

    def close(self) -> None:
        self.file.wq.remove(self._on_wake)
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


class SimSyscalls:
    """The Syscalls protocol over a booted Kernel, as the process ``task``."""

    kind = "sim"

    def __init__(self, kernel: Kernel, task: Task) -> None:
        self.kernel = kernel
        self.task = task
        self._mirrors: dict[int, PollMirror] = {}

    # -- helpers ---------------------------------------------------------------------------
    def _file(self, fd: int) -> File:
        return self.task.files.get(fd)

    def _sync(self, fd: int) -> None:
        mirror = self._mirrors.get(fd)
        if mirror is not None:
            mirror.sync()

    def _syscall(self, name: str, *args: int, filename: str | None = None) -> int:
        """Enter the kernel as this process; a negative return is the errno, raised."""
        ret = self.kernel.syscall(self.task, name, *args)
        if ret < 0:
            raise oserror(-ret, filename)
        return ret

    # -- bpf and perf ----------------------------------------------------------------------
    def bpf(self, cmd: int, attr) -> int:
        buf = _user_buffer(attr)
        return self._syscall("bpf", cmd, ctypes.addressof(buf) if len(buf) else 0, len(buf))

    def perf_event_open(self, attr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        buf = _user_buffer(attr)
        return self._syscall("perf_event_open", ctypes.addressof(buf), pid, cpu, group_fd, flags)

    def ioctl(self, fd: int, request: int, arg: int = 0) -> int:
        result = self._syscall("ioctl", fd, request, arg)
        self._sync(fd)
        return result

    def mmap(self, fd: int, length: int, prot: int, flags: int, offset: int):
        if length <= 0 or offset % 4096:
            raise oserror(errno.EINVAL)
        with running(self.task):
            return self._file(fd).mmap(length, prot, flags, offset)

    def munmap(self, buf) -> None:
        unmap = getattr(buf, "munmap", None)
        if unmap is not None:
            unmap()
        else:
            buf.close()

    # -- files -----------------------------------------------------------------------------
    def openat(self, path: str, flags: int, mode: int = 0) -> int:
        # Through the syscall entry, so tracepoints and kprobes on do_sys_openat2 see it.
        addr = self.task.memory.put_str(path)
        return self._syscall("openat", AT_FDCWD, addr, flags, mode, filename=path)

    def read(self, fd: int, n: int) -> bytes:
        if n < 0:
            raise oserror(errno.EINVAL)
        buf = ctypes.create_string_buffer(max(n, 1))
        got = self._syscall("read", fd, ctypes.addressof(buf), n)
        self._sync(fd)
        return buf.raw[:got]

    def write(self, fd: int, data: bytes) -> int:
        buf = ctypes.create_string_buffer(bytes(data), max(len(data), 1))
        written = self._syscall("write", fd, ctypes.addressof(buf), len(data))
        self._sync(fd)
        return written

    def close(self, fd: int) -> None:
        mirror = self._mirrors.pop(fd, None)
        if mirror is not None:
            mirror.close()
        self._syscall("close", fd)

    def unlink(self, path: str) -> None:
        with running(self.task):
            unlink = getattr(self.kernel, "unlink", None)
            if unlink is None:
                raise oserror(errno.EPERM)
            unlink(path)

    def uname(self) -> Utsname:
        k = self.kernel
        return Utsname("Linux", k.hostname, k.release, k.version, k.arch)

    def getpid(self) -> int:
        return self._syscall("getpid")

    # -- eventfd and epoll -------------------------------------------------------------------
    def eventfd(self, initval: int, flags: int) -> int:
        return self.task.files.install(EventFd(initval, flags))

    def epoll_create1(self, flags: int) -> int:
        if flags & ~EPOLL_CLOEXEC:
            raise oserror(errno.EINVAL)
        return self.task.files.install(EpollFile())

    def epoll_ctl(self, epfd: int, op: int, fd: int, events: int) -> None:
        ep = self._file(epfd)
        target = self._file(fd)
        if not target.pollable:
            raise oserror(errno.EPERM)
        if not isinstance(ep, EpollFile):
            raise oserror(errno.EINVAL)
        ep.ctl(op, fd, target, events)
        self._sync(epfd)

    def epoll_wait(self, epfd: int, maxevents: int, timeout_ms: int) -> list[tuple[int, int]]:
        ep = self._file(epfd)
        if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
            raise oserror(errno.EINVAL)
        if not isinstance(ep, EpollFile):
            raise oserror(errno.EINVAL)
        events = ep.wait(maxevents, timeout_ms)
        self._sync(epfd)
        return events

    def poll_handle(self, fd: int) -> int:
        mirror = self._mirrors.get(fd)
        if mirror is None:
            mirror = self._mirrors[fd] = PollMirror(self._file(fd))
        return mirror.fd

    # -- the simulated system's activity (not a syscall: what the machine is doing) --------
    def start_workload(self, name: str) -> None:
        """Start a built-in workload (kernel_sim/workloads.py) on the simulated CPUs."""
        self.kernel.start_workload(name)

    def stop_workload(self) -> None:
        """Stop the simulated CPUs' workloads (joins their threads)."""
        self.kernel.shutdown()

    # -- teardown ----------------------------------------------------------------------------
    def close_all(self) -> None:
        """Close every descriptor of the process (what exit does)."""
        for mirror in self._mirrors.values():
            mirror.close()
        self._mirrors.clear()
        self.task.files.close_all()


def _user_buffer(attr) -> ctypes.Array:
    """The caller's attr as user memory: the same bytes when writable (the kernel writes back
    into them, as into a real bpf_attr), else a copy."""
    try:
        return (ctypes.c_char * len(memoryview(attr).cast("B"))).from_buffer(attr)
    except TypeError:
        data = bytes(attr)
        return ctypes.create_string_buffer(data, max(len(data), 1))
