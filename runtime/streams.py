"""Async iteration over what BPF programs send: perf buffer samples and ring buffer records.

Both streams read only when the consumer asks for more (``__anext__``), so a slow consumer
applies no pressure on the producers: the simulated CPUs (or Linux's) keep writing into the
shared ring, records that do not fit are dropped by the kernel, and a perf stream reports
them as lost counts per CPU, as Aya's PerfBuffer does. Nothing here blocks a producer.

The sources are duck-typed so that the loader's classes plug in without this package
importing the loader:

- a perf buffer has ``fd``, ``cpu`` and ``read_events() -> (list[bytes], lost)`` (it drains
  what is there now and never blocks);
- a ring buffer has ``fd`` and ``next() -> bytes | None``.

The streams are classes with ``__anext__`` rather than async generators so that breaking out
of an ``async for`` needs no finalizer and leaves the reactor clean.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kernel_sim.uapi.epoll import EPOLLERR, EPOLLHUP, EPOLLIN

from .reactor import Reactor


class PerfSource(Protocol):
    fd: int
    cpu: int

    def read_events(self) -> tuple[list[bytes], int]: ...


class RingSource(Protocol):
    fd: int

    def next(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class PerfBatch:
    """What one CPU's perf buffer held when read: samples in order, and records lost before."""

    cpu: int
    samples: list[bytes]
    lost: int


class PerfStream:
    """``async for batch in PerfStream(reactor, buffers)``: PerfBatch per CPU with data."""

    def __init__(self, reactor: Reactor, buffers: Iterable[PerfSource]) -> None:
        self.reactor = reactor
        self.buffers: dict[int, PerfSource] = {b.fd: b for b in buffers}
        self._queue: deque[PerfBatch] = deque()
        self._to_read: list[int] = list(self.buffers)  # read everything once at start
        self.lost: dict[int, int] = {b.cpu: 0 for b in self.buffers.values()}
        self.samples = 0
        self.closed = False

    def __aiter__(self) -> PerfStream:
        return self

    def _read(self, fds: Sequence[int]) -> None:
        for fd in fds:
            buf = self.buffers.get(fd)
            if buf is None:
                continue
            events, lost = buf.read_events()
            if events or lost:
                self.samples += len(events)
                self.lost[buf.cpu] = self.lost.get(buf.cpu, 0) + lost
                self._queue.append(PerfBatch(buf.cpu, events, lost))

    async def __anext__(self) -> PerfBatch:
        while not self._queue:
            if self.closed or not self.buffers:
                raise StopAsyncIteration
            self._read(self._to_read)
            if self._queue:
                break
            ready = await self.reactor.wait_any(self.buffers)
            self._drop_hung_up(ready)
            # Read every buffer, not only those epoll named: a report can be lost (see the
            # reactor), and checking an idle buffer is one read of its data_head.
            self._to_read = list(self.buffers)
        return self._queue.popleft()

    def _drop_hung_up(self, ready: list[tuple[int, int]]) -> None:
        """A buffer that reports hang-up or error without data (no ring mapped, event gone)
        would be ready forever: read it one last time and stop waiting on it."""
        for fd, revents in ready:
            if revents & (EPOLLHUP | EPOLLERR) and not revents & EPOLLIN and fd in self.buffers:
                self._read([fd])
                self.reactor.forget(fd)
                del self.buffers[fd]

    def close(self) -> None:
        """Forget the buffers in the reactor; their owner closes them."""
        if not self.closed:
            self.closed = True
            for fd in self.buffers:
                self.reactor.forget(fd)


class RingStream:
    """``async for record in RingStream(reactor, ring)``: each BPF ring buffer record's bytes."""

    def __init__(self, reactor: Reactor, ring: RingSource) -> None:
        self.reactor = reactor
        self.ring = ring
        self.records = 0
        self.closed = False

    def __aiter__(self) -> RingStream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self.closed:
                raise StopAsyncIteration
            record = self.ring.next()
            if record is not None:
                self.records += 1
                return record
            revents = await self.reactor.wait_readable(self.ring.fd)
            if revents & (EPOLLHUP | EPOLLERR) and not revents & EPOLLIN:
                self.close()  # nothing more will come: end the iteration instead of spinning

    def drain(self, limit: int | None = None) -> list[bytes]:
        """The records there now, without waiting (for consumers that batch)."""
        out: list[bytes] = []
        while limit is None or len(out) < limit:
            record = self.ring.next()
            if record is None:
                break
            out.append(record)
        self.records += len(out)
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.reactor.forget(self.ring.fd)
