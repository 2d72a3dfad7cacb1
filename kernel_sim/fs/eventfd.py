"""eventfd(2): a 64-bit counter file, the wake-up primitive of the async runtime."""

from __future__ import annotations

import errno
import struct

from ..uapi.epoll import (
    EFD_FLAGS_SET,
    EFD_NONBLOCK,
    EFD_SEMAPHORE,
    EPOLLERR,
    EPOLLIN,
    EPOLLOUT,
    EPOLLRDNORM,
    EPOLLWRNORM,
    EVENTFD_MAX,
)
from .file import File, oserror

_U64 = struct.Struct("<Q")
ULLONG_MAX = (1 << 64) - 1


class EventFd(File):
    """Counter semantics of Linux's fs/eventfd.c."""

    name = "[eventfd]"
    pollable = True

    def __init__(self, initval: int, flags: int) -> None:
        if flags & ~EFD_FLAGS_SET:
            raise oserror(errno.EINVAL)
        super().__init__(flags & EFD_NONBLOCK)
        self.count = initval & 0xFFFFFFFF
        self.semaphore = bool(flags & EFD_SEMAPHORE)

    def read(self, n: int) -> bytes:
        if n < 8:
            raise oserror(errno.EINVAL)
        while True:
            with self.wq.cond:
                if self.count > 0:
                    if self.semaphore:
                        value = 1
                        self.count -= 1
                    else:
                        value, self.count = self.count, 0
                    break
            if self.nonblocking:
                raise oserror(errno.EAGAIN)
            self.wq.wait_for(lambda: self.count > 0, None)
        self.wq.wake(EPOLLOUT)
        return _U64.pack(value)

    def write(self, data: bytes) -> int:
        if len(data) < 8:
            raise oserror(errno.EINVAL)
        (value,) = _U64.unpack_from(data)
        if value == ULLONG_MAX:
            raise oserror(errno.EINVAL)
        while True:
            with self.wq.cond:
                if EVENTFD_MAX - self.count >= value:
                    self.count += value
                    break
            if self.nonblocking:
                raise oserror(errno.EAGAIN)
            self.wq.wait_for(lambda: EVENTFD_MAX - self.count >= value, None)
        if value:
            self.wq.wake(EPOLLIN)
        return 8

    def poll(self) -> int:
        count = self.count
        mask = 0
        if count > 0:
            mask |= EPOLLIN | EPOLLRDNORM
        if count == ULLONG_MAX:
            mask |= EPOLLERR
        if count < EVENTFD_MAX:
            mask |= EPOLLOUT | EPOLLWRNORM
        return mask
