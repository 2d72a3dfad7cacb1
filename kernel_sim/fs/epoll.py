"""epoll(7) as fs/eventpoll.c behaves: an interest list, a ready list, LT / ET / ONESHOT.

Each watched file's wait queue gets a callback (Linux's ep_poll_callback) that puts the item
on the ready list when the file's readiness matches the item's events. epoll_wait re-polls
each ready item: level-triggered items go back on the list, edge-triggered ones do not, and
one-shot items are disarmed until EPOLL_CTL_MOD re-arms them. The epoll file is itself
pollable (readable while its ready list holds a ready item), which is what lets the runtime
mirror it onto a real OS descriptor.
"""

from __future__ import annotations

import errno
import threading
import time
from collections import OrderedDict

from ..uapi.epoll import (
    EP_MAX_EVENTS,
    EP_PRIVATE_BITS,
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLL_CTL_MOD,
    EPOLLERR,
    EPOLLET,
    EPOLLEXCLUSIVE,
    EPOLLHUP,
    EPOLLIN,
    EPOLLONESHOT,
    EPOLLRDNORM,
    EPOLLWAKEUP,
)
from .file import File, oserror

_ALWAYS = EPOLLERR | EPOLLHUP
# Events EPOLLEXCLUSIVE may be combined with (Linux's EPOLLEXCLUSIVE_OK_BITS).
_EXCLUSIVE_OK = EPOLLIN | 0x004 | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE


class _Item:
    __slots__ = ("fd", "file", "events", "callback", "release_hook")

    def __init__(self, fd: int, file: File, events: int) -> None:
        self.fd = fd
        self.file = file
        self.events = events


class EpollFile(File):
    name = "[eventpoll]"
    pollable = True

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._items: dict[tuple[int, int], _Item] = {}
        self._ready: OrderedDict[tuple[int, int], _Item] = OrderedDict()

    # -- the callback run from a watched file's wait queue -----------------------------------
    def _make_callback(self, key: tuple[int, int], item: _Item):
        def ep_poll_callback(mask: int) -> None:
            # As Linux: a wake that names its events is filtered by them; one that does not
            # (mask 0) queues the item and epoll_wait's re-poll decides. The file's poll() is
            # not called here: some files (perf buffers) clear readiness when polled.
            with self._lock:
                if key not in self._items:
                    return
                if not (item.events & ~EP_PRIVATE_BITS):
                    return  # disarmed one-shot
                if mask and not (mask & item.events):
                    return
                newly = key not in self._ready
                self._ready[key] = item
            if newly:
                self.wq.wake(EPOLLIN)
            else:
                with self.wq.cond:
                    self.wq.cond.notify_all()

        return ep_poll_callback

    # -- epoll_ctl ---------------------------------------------------------------------------
    def ctl(self, op: int, fd: int, file: File, events: int) -> None:
        if file is self:
            raise oserror(errno.EINVAL)
        if not file.pollable:
            raise oserror(errno.EPERM)
        if op not in (EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL):
            raise oserror(errno.EINVAL)
        if events & EPOLLEXCLUSIVE:
            if op == EPOLL_CTL_MOD:
                raise oserror(errno.EINVAL)
            if op == EPOLL_CTL_ADD and (isinstance(file, EpollFile) or events & ~_EXCLUSIVE_OK):
                raise oserror(errno.EINVAL)
        key = (fd, id(file))
        with self._lock:
            item = self._items.get(key)
            if op == EPOLL_CTL_ADD:
                if item is not None:
                    raise oserror(errno.EEXIST)
                item = _Item(fd, file, events | _ALWAYS)
                item.callback = self._make_callback(key, item)
                item.release_hook = lambda _f, key=key: self._forget(key)
                self._items[key] = item
                file.wq.add(item.callback)
                file.on_release(item.release_hook)
            elif op == EPOLL_CTL_MOD:
                if item is None:
                    raise oserror(errno.ENOENT)
                if item.events & EPOLLEXCLUSIVE:
                    raise oserror(errno.EINVAL)
                item.events = events | _ALWAYS
                self._ready.pop(key, None)
            else:
                if item is None:
                    raise oserror(errno.ENOENT)
                self._forget(key)
                return
        # Like ep_insert / ep_modify: poll now, queue if already ready.
        ready = file.poll() & item.events
        if ready:
            item.callback(ready)

    def _forget(self, key: tuple[int, int]) -> None:
        with self._lock:
            item = self._items.pop(key, None)
            self._ready.pop(key, None)
        if item is not None:
            item.file.wq.remove(item.callback)
            item.file.off_release(item.release_hook)

    # -- epoll_wait --------------------------------------------------------------------------
    def _harvest(self, maxevents: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        with self._lock:
            requeue = []
            while self._ready and len(out) < maxevents:
                key, item = self._ready.popitem(last=False)
                revents = item.file.poll() & item.events
                if not revents:
                    continue
                out.append((item.fd, revents))
                if item.events & EPOLLONESHOT:
                    item.events &= EP_PRIVATE_BITS
                elif not item.events & EPOLLET:
                    requeue.append((key, item))
            for key, item in requeue:
                self._ready[key] = item
        return out

    def wait(self, maxevents: int, timeout_ms: int) -> list[tuple[int, int]]:
        if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
            raise oserror(errno.EINVAL)
        deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0
        while True:
            events = self._harvest(maxevents)
            if events:
                return events
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            # Sleep until something is queued, then harvest again (it may have gone, as in Linux).
            self.wq.wait_for(lambda: bool(self._ready), remaining)

    def poll(self) -> int:
        with self._lock:
            for item in self._ready.values():
                if item.file.poll() & item.events:
                    return EPOLLIN | EPOLLRDNORM
        return 0

    def release(self) -> None:
        for key in list(self._items):
            self._forget(key)
