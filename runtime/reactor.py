"""The reactor: one epoll instance in the kernel in use, driven from a single trio task.

Why this shape (DESIGN.md, "Readiness"): the descriptors userland waits on (perf buffers,
BPF ring buffers, eventfds) live in whichever kernel the Syscalls object speaks to; for the
simulated kernel they are not OS descriptors at all. So trio cannot wait on them directly.
Instead the reactor owns one epoll instance *in that kernel*, registers every descriptor a
task waits on there, and trio sleeps on exactly one real OS descriptor,
``sys.poll_handle(epfd)``: on Linux the epoll fd itself (epoll fds are pollable), on
kernel_sim a real eventfd that the simulated epoll keeps readable while its ready list is.
When that descriptor turns readable, the pump calls ``epoll_wait(timeout=0)`` and wakes the
trio tasks waiting on the descriptors it names. Nothing polls on a timer.

Descriptors are registered one-shot (``EPOLLIN | EPOLLONESHOT``) and re-armed with
``EPOLL_CTL_MOD`` when a task waits again: a level-triggered descriptor nobody is waiting
for (a slow reader's full perf buffer) would otherwise keep the epoll ready and spin the
pump. Re-arming polls the file at once (ep_modify), so nothing that became ready in between
is missed.

A waker eventfd (in the same kernel, in the same epoll) lets other threads - a simulated CPU,
a keyboard thread - wake the trio side with ``wake_threadsafe()``.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio

from kernel_sim.uapi.epoll import (
    EFD_CLOEXEC,
    EFD_NONBLOCK,
    EPOLL_CLOEXEC,
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLL_CTL_MOD,
    EPOLLIN,
    EPOLLONESHOT,
)
from kernel_sim.uapi.syscalls import Syscalls

MAX_EVENTS = 64
_ONE = (1).to_bytes(8, "little")


class _Waiter:
    """One task waiting for any of a set of descriptors."""

    __slots__ = ("event", "ready")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.ready: list[tuple[int, int]] = []


class Reactor:
    """The epoll reactor over ``sys``. Create it with ``open_reactor(sys)``."""

    def __init__(self, sys: Syscalls) -> None:
        self.sys = sys
        self.epfd = sys.epoll_create1(EPOLL_CLOEXEC)
        try:
            self.waker = sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            sys.epoll_ctl(self.epfd, EPOLL_CTL_ADD, self.waker, EPOLLIN)
            self.handle = sys.poll_handle(self.epfd)
        except BaseException:
            sys.close(self.epfd)
            raise
        self._waiters: dict[int, _Waiter] = {}
        self._registered: set[int] = set()
        self._armed: set[int] = set()
        self._woken = trio.Event()
        self.wakeups = 0  # times the pump woke (tests and benchmarks read it)
        self.closed = False

    # -- registration -----------------------------------------------------------------------
    def _arm(self, fd: int) -> None:
        """(Re)arm ``fd`` one-shot for EPOLLIN; ADD the first time, MOD afterwards."""
        if fd in self._armed:
            return
        ops = (EPOLL_CTL_MOD, EPOLL_CTL_ADD) if fd in self._registered else (EPOLL_CTL_ADD, EPOLL_CTL_MOD)
        try:
            self.sys.epoll_ctl(self.epfd, ops[0], fd, EPOLLIN | EPOLLONESHOT)
        except OSError as e:
            # The fd was closed and its number reused (MOD -> ENOENT), or registered behind our
            # back (ADD -> EEXIST): the other operation is the right one.
            if e.errno not in (errno.ENOENT, errno.EEXIST):
                raise
            self.sys.epoll_ctl(self.epfd, ops[1], fd, EPOLLIN | EPOLLONESHOT)
        self._registered.add(fd)
        self._armed.add(fd)

    def forget(self, fd: int) -> None:
        """Take ``fd`` out of the epoll; call it before closing a descriptor you waited on."""
        self._armed.discard(fd)
        if fd in self._registered:
            self._registered.discard(fd)
            try:
                self.sys.epoll_ctl(self.epfd, EPOLL_CTL_DEL, fd, 0)
            except OSError:
                pass  # already closed: the kernel dropped it from the epoll itself
        waiter = self._waiters.pop(fd, None)
        if waiter is not None:
            waiter.event.set()  # its task re-checks and finds nothing ready

    # -- waiting ----------------------------------------------------------------------------
    async def wait_any(self, fds: Iterable[int]) -> list[tuple[int, int]]:
        """Sleep until one of ``fds`` may be readable; returns [(fd, revents)] epoll named.

        The list may be empty: every reactor wake-up wakes every waiter, which then re-checks
        its sources (see _dispatch for why a readiness report can be lost on Linux).

        One task per descriptor at a time (trio.BusyResourceError otherwise), as with
        trio.lowlevel.wait_readable. Cancellation leaves the descriptors registered but with
        nobody waiting: a later wake-up for them is dropped and they stay disarmed.
        """
        fds = list(fds)
        if self.closed:
            raise trio.ClosedResourceError("reactor is closed")
        for fd in fds:
            if fd in self._waiters:
                raise trio.BusyResourceError(f"another task is already waiting on fd {fd}")
        waiter = _Waiter()
        for fd in fds:
            self._waiters[fd] = waiter
        try:
            for fd in fds:
                self._arm(fd)
            await waiter.event.wait()
        finally:
            for fd in fds:
                if self._waiters.get(fd) is waiter:
                    del self._waiters[fd]
        return waiter.ready

    async def wait_readable(self, fd: int) -> int:
        """Sleep until ``fd`` is readable (or hung up / in error); returns its revents, or 0
        when woken without a report for it (re-check the source, then wait again)."""
        ready = await self.wait_any((fd,))
        return ready[0][1] if ready else 0

    def wake_threadsafe(self) -> None:
        """Wake the reactor from any thread (through the waker eventfd in the kernel)."""
        try:
            self.sys.write(self.waker, _ONE)
        except OSError:
            pass  # counter saturated or reactor closed: it is awake or gone anyway

    async def woken(self) -> None:
        """Sleep until some thread calls wake_threadsafe()."""
        await self._woken.wait()

    # -- the pump -----------------------------------------------------------------------------
    def _dispatch(self) -> int:
        """One epoll_wait(timeout=0) round; wakes the waiters it names. Returns the count."""
        events = self.sys.epoll_wait(self.epfd, MAX_EVENTS, 0)
        for fd, revents in events:
            if fd == self.waker:
                try:
                    self.sys.read(self.waker, 8)
                except BlockingIOError:
                    pass
                woken, self._woken = self._woken, trio.Event()
                woken.set()
                continue
            self._armed.discard(fd)  # one-shot: the kernel disarmed it
            waiter = self._waiters.get(fd)
            if waiter is not None:
                waiter.ready.append((fd, revents))
                waiter.event.set()
        # Every waiter re-checks on every wake-up, named or not. Linux's perf_poll is
        # destructive (it clears the buffer's wake-up flag): a report harvested while nobody
        # waited, or consumed by a nested poll (trio's epoll polls ours), is not repeated
        # when the fd is re-armed. The streams' own checks (data_head != data_tail, the ring's
        # positions) are cheap and non-destructive; a one-shot fd nobody reads still cannot
        # make the pump spin.
        for waiter in set(self._waiters.values()):
            waiter.event.set()
        return len(events)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The pump: sleep on the one real descriptor, then dispatch. Runs until cancelled."""
        task_status.started()
        while True:
            await trio.lowlevel.wait_readable(self.handle)
            self.wakeups += 1
            while self._dispatch() == MAX_EVENTS:
                pass  # more may be queued; the handle would say so too, this saves a round

    def close(self) -> None:
        """Close the epoll and the waker (and, on kernel_sim, the mirror descriptor)."""
        if self.closed:
            return
        self.closed = True
        for waiter in set(self._waiters.values()):
            waiter.event.set()
        self._waiters.clear()
        try:
            trio.lowlevel.notify_closing(self.handle)
        except RuntimeError:
            pass  # not inside trio (closing after the run)
        self.sys.close(self.waker)
        self.sys.close(self.epfd)


@asynccontextmanager
async def open_reactor(sys: Syscalls) -> AsyncIterator[Reactor]:
    """A running reactor for the block; on exit (or cancellation) every fd it made is closed."""
    reactor = Reactor(sys)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reactor.run)
            try:
                yield reactor
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The caller's block runs inside our nursery; newer trio wraps what it raises in a
        # group. The pump raises nothing of its own, so a lone exception is the caller's.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        reactor.close()
