"""The File abstraction and wait queues.

Everything userland holds is a file: eventfds, epoll instances, BPF maps and programs, perf
events, sysfs entries. A File answers read/write/ioctl/poll/mmap; the defaults give the errno
Linux gives when the file type has no such operation. Wait queues carry readiness changes to
whoever waits (blocking readers, epoll items, poll mirrors) across simulated-CPU threads.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable


def oserror(code: int, detail: str | None = None) -> OSError:
    """OSError with a Linux errno, as Python's os functions raise it."""
    msg = os.strerror(code)
    if detail:
        msg = f"{msg}: {detail}"
    return OSError(code, msg)


WakeCallback = Callable[[int], None]


class WaitQueue:
    """Callbacks run on every wake, plus a condition for blocking waiters."""

    def __init__(self) -> None:
        self._callbacks: list[WakeCallback] = []
        self.cond = threading.Condition(threading.Lock())

    def add(self, cb: WakeCallback) -> None:
        self._callbacks.append(cb)

    def remove(self, cb: WakeCallback) -> None:
        try:
            self._callbacks.remove(cb)
        except ValueError:
            pass

    def wake(self, mask: int = 0) -> None:
        with self.cond:
            self.cond.notify_all()
        for cb in list(self._callbacks):
            cb(mask)

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until predicate() holds or the timeout (seconds; None = forever) passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True


class File:
    """An open file description. Subclasses override the operations they support."""

    name = "anon"

    def __init__(self, flags: int = 0) -> None:
        self.flags = flags
        self.wq = WaitQueue()
        self.pos = 0
        self._refs = 0
        self._release_hooks: list[Callable[[File], None]] = []

    # -- operations ------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        raise oserror(errno.EINVAL)

    def write(self, data: bytes) -> int:
        raise oserror(errno.EINVAL)

    def ioctl(self, request: int, arg: int) -> int:
        raise oserror(errno.ENOTTY)

    def poll(self) -> int:
        """The ready mask; files without a poll op are always readable and writable."""
        from ..uapi.epoll import EPOLLIN, EPOLLOUT, EPOLLRDNORM, EPOLLWRNORM

        return EPOLLIN | EPOLLOUT | EPOLLRDNORM | EPOLLWRNORM

    pollable = False  # whether epoll may watch it (Linux: EPERM for files without f_op->poll)

    def mmap(self, length: int, prot: int, flags: int, offset: int):
        raise oserror(errno.ENODEV)

    def release(self) -> None:
        """Called once when the last descriptor to the file is closed."""

    # -- reference counting -------------------------------------------------------------------
    def get(self) -> File:
        self._refs += 1
        return self

    def put(self) -> None:
        self._refs -= 1
        if self._refs == 0:
            for hook in list(self._release_hooks):
                hook(self)
            self.release()

    def on_release(self, hook: Callable[[File], None]) -> None:
        self._release_hooks.append(hook)

    def off_release(self, hook: Callable[[File], None]) -> None:
        try:
            self._release_hooks.remove(hook)
        except ValueError:
            pass

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & 0o4000)
