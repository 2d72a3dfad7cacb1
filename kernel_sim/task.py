"""Tasks (processes and threads) and their descriptor tables.

``current()`` is the task running on the calling thread: a simulated CPU sets it while it runs
a task, and the Syscalls seam sets it around each call userland makes.
"""

from __future__ import annotations

import errno
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from .fs.file import File, oserror

RLIMIT_NOFILE = 1024


class FdTable:
    """A task's file descriptors: lowest free number first, as Linux allocates them."""

    def __init__(self, reserved: int = 3) -> None:
        self._files: dict[int, File] = {}
        self._lock = threading.Lock()
        self._reserved = reserved  # 0..2 stand for the terminal the process was started on

    def install(self, file: File) -> int:
        with self._lock:
            fd = self._reserved
            while fd in self._files:
                fd += 1
            if fd >= RLIMIT_NOFILE:
                raise oserror(errno.EMFILE)
            self._files[fd] = file.get()
            return fd

    def get(self, fd: int) -> File:
        file = self._files.get(fd)
        if file is None:
            raise oserror(errno.EBADF)
        return file

    def close(self, fd: int) -> None:
        with self._lock:
            file = self._files.pop(fd, None)
        if file is None:
            raise oserror(errno.EBADF)
        file.put()

    def close_all(self) -> None:
        for fd in list(self._files):
            self.close(fd)

    def fds(self) -> list[int]:
        return sorted(self._files)

    def __len__(self) -> int:
        return len(self._files)


@dataclass(eq=False)
class Task:
    pid: int
    tgid: int
    comm: str
    uid: int = 0
    gid: int = 0
    cpu: int = 0
    files: FdTable = field(default_factory=FdTable)
    # Arbitrary per-task state other subsystems attach (cwd, ...).
    state: dict = field(default_factory=dict)
    memory: object = None  # UserMemory: where the task's pointer arguments live

    @property
    def comm_bytes(self) -> bytes:
        """TASK_COMM_LEN = 16: the name truncated to 15 bytes plus NUL."""
        return self.comm.encode()[:15].ljust(16, b"\0")


_current = threading.local()


def current() -> Task | None:
    return getattr(_current, "task", None)


@contextmanager
def running(task: Task):
    """Make ``task`` current on this thread for the duration (nests)."""
    prev = getattr(_current, "task", None)
    _current.task = task
    try:
        yield task
    finally:
        _current.task = prev
