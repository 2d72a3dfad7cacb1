"""The runtime's reactor and streams on both kernels: wake-ups, no busy waiting, no fd left.

The reactor is tested with eventfds (on both kernels) and with BPF output perf events whose
samples the simulated kernel writes from other threads, as a BPF program on a CPU would.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import threading
import time

import pytest
import trio
import trio.testing

from kernel_sim.uapi.epoll import EFD_CLOEXEC, EFD_NONBLOCK, EPOLLIN, MAP_SHARED, PROT_READ, PROT_WRITE
from kernel_sim.uapi.perf import (
    DATA_HEAD_OFFSET,
    DATA_TAIL_OFFSET,
    PERF_FLAG_FD_CLOEXEC,
    PERF_SAMPLE_RAW,
    PerfEventAttr,
    PerfRecordType,
    PerfSwId,
    PerfType,
)
from loader.backends import open_kernel
from runtime import PerfStream, RingStream, open_reactor

_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<IHH")
PAGE = mmap.PAGESIZE


def output_attr() -> bytearray:
    """A BPF output event that wakes its reader on every sample (as Aya opens them)."""
    return bytearray(bytes(PerfEventAttr(type=PerfType.SOFTWARE, size=ctypes.sizeof(PerfEventAttr),
                                         config=PerfSwId.BPF_OUTPUT, sample_type=PERF_SAMPLE_RAW,
                                         wakeup_events=1)))


def fd_snapshot(sys) -> tuple[list[int], list[str]]:
    """The kernel's fd table of our process and the real OS descriptors of this process."""
    os_fds = sorted(os.listdir("/proc/self/fd"), key=int)
    sim_fds = sys.task.files.fds() if sys.kind == "sim" else []
    return sim_fds, os_fds


class OutputBuffer:
    """A minimal reader of one BPF output perf buffer (what the loader's PerfBuffer does)."""

    def __init__(self, sys, cpu: int, pages: int = 1) -> None:
        self.sys = sys
        self.cpu = cpu
        self.fd = sys.perf_event_open(output_attr(), -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
        self.mem = sys.mmap(self.fd, (1 + pages) * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0)
        self.size = pages * PAGE
        self.event = sys.task.files.get(self.fd)

    def read_events(self) -> tuple[list[bytes], int]:
        head = _U64.unpack_from(self.mem, DATA_HEAD_OFFSET)[0]
        tail = _U64.unpack_from(self.mem, DATA_TAIL_OFFSET)[0]
        events, lost = [], 0
        while tail < head:
            off = tail % self.size
            rtype, _misc, size = _HDR.unpack_from(self._bytes(off, 8))
            body = self._bytes(off + 8, size - 8)
            if rtype == PerfRecordType.SAMPLE:
                (n,) = struct.unpack_from("<I", body)
                events.append(body[4 : 4 + n])
            elif rtype == PerfRecordType.LOST:
                lost += struct.unpack_from("<QQ", body)[1]
            tail += size
        _U64.pack_into(self.mem, DATA_TAIL_OFFSET, tail)
        return events, lost

    def _bytes(self, off: int, n: int) -> bytes:
        off %= self.size
        first = self.mem[PAGE + off : PAGE + min(self.size, off + n)]
        return bytes(first) + bytes(self.mem[PAGE : PAGE + n - len(first)])

    def close(self) -> None:
        self.sys.munmap(self.mem)
        self.sys.close(self.fd)


@pytest.fixture(params=["sim", "linux"])
def sys(request):
    return open_kernel(request.param) if request.param == "linux" else open_kernel("sim", cpus=2)


async def test_eventfd_wakes_the_waiting_task(sys):
    efd = sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    async with open_reactor(sys) as reactor, trio.open_nursery() as nursery:
        got = []

        async def waiter():
            got.append(await reactor.wait_readable(efd))

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # nothing written: still asleep
        sys.write(efd, _U64.pack(1))
    assert got and got[0] & EPOLLIN
    sys.close(efd)


async def test_a_write_from_another_thread_wakes_it(sys):
    efd = sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    async with open_reactor(sys) as reactor:
        threading.Timer(0.05, lambda: sys.write(efd, _U64.pack(7))).start()
        with trio.fail_after(10):
            mask = await reactor.wait_readable(efd)
        assert mask & EPOLLIN
        assert sys.read(efd, 8) == _U64.pack(7)
        threading.Timer(0.05, reactor.wake_threadsafe).start()
        with trio.fail_after(10):
            await reactor.woken()
    sys.close(efd)


async def test_idle_reader_uses_no_cpu_and_wakes_at_once(sys):
    """An idle reader sleeps in the kernel: ~no CPU over a second, then wakes on the event.

    The runtime is single-threaded, so the CPU time of the thread running trio is the reader's
    (other threads of the test process, e.g. a simulated kernel another test left running, do
    not count)."""
    efd = sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    woke_at = []
    async with open_reactor(sys) as reactor:

        async def reader():
            await reactor.wait_readable(efd)
            woke_at.append(time.monotonic())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            wakeups = reactor.wakeups
            cpu0 = time.thread_time()
            await trio.sleep(1.0)
            idle_cpu = time.thread_time() - cpu0
            assert reactor.wakeups == wakeups  # not one spurious wake-up while idle
            written = []
            threading.Thread(target=lambda: (written.append(time.monotonic()), sys.write(efd, _U64.pack(1)))).start()
    print(f"\n{sys.kind}: idle CPU {idle_cpu * 1000:.1f} ms over 1 s; wake-up {1000 * (woke_at[0] - written[0]):.2f} ms")
    assert idle_cpu < 0.05  # busy polling would burn the whole second
    assert woke_at[0] - written[0] < 1.0  # generous: what matters is that an event ends the sleep
    sys.close(efd)


async def test_a_ready_descriptor_nobody_reads_does_not_spin_the_reactor(sys):
    efd = sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    sys.write(efd, _U64.pack(1))
    async with open_reactor(sys) as reactor:
        await reactor.wait_readable(efd)  # ready; and we never read it
        wakeups = reactor.wakeups
        cpu0 = time.thread_time()
        await trio.sleep(0.3)
        assert reactor.wakeups - wakeups <= 1
        assert time.thread_time() - cpu0 < 0.1
        assert await reactor.wait_readable(efd) & EPOLLIN  # re-armed, still ready: at once
    sys.close(efd)


async def test_cancellation_closes_every_fd_it_opened(sys):
    before = fd_snapshot(sys)
    efd = sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    with trio.move_on_after(0.2) as scope:
        async with open_reactor(sys) as reactor:
            assert fd_snapshot(sys) != before
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reactor.wait_readable, efd)
                nursery.start_soon(reactor.woken)
                await trio.sleep_forever()
    assert scope.cancelled_caught
    sys.close(efd)
    assert fd_snapshot(sys) == before


async def test_two_tasks_on_one_fd_is_an_error(sys):
    efd = sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    async with open_reactor(sys) as reactor, trio.open_nursery() as nursery:
        nursery.start_soon(reactor.wait_readable, efd)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await reactor.wait_readable(efd)
        nursery.cancel_scope.cancel()
    sys.close(efd)


async def test_closing_a_registered_fd_and_reusing_its_number(sys):
    async with open_reactor(sys) as reactor:
        efd = sys.eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC)
        await reactor.wait_readable(efd)
        sys.close(efd)  # without forget(): the kernel drops it from the epoll
        again = sys.eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC)
        assert await reactor.wait_readable(again) & EPOLLIN
        reactor.forget(again)
        sys.close(again)


# -- perf buffers on the simulated kernel -------------------------------------------------------


async def test_perf_stream_delivers_samples_per_cpu_from_cpu_threads():
    sys = open_kernel("sim", cpus=2)
    bufs = [OutputBuffer(sys, cpu, pages=4) for cpu in range(2)]
    n = 200

    def produce(buf):
        for i in range(n):
            assert buf.event.output(struct.pack("<II", buf.cpu, i)) == 0
            if i % 50 == 0:
                time.sleep(0.001)

    got: dict[int, list[int]] = {0: [], 1: []}
    async with open_reactor(sys) as reactor:
        stream = PerfStream(reactor, bufs)
        threads = [threading.Thread(target=produce, args=(b,)) for b in bufs]
        for t in threads:
            t.start()
        with trio.fail_after(20):
            async for batch in stream:
                assert batch.lost == 0
                for raw in batch.samples:
                    cpu, i = struct.unpack_from("<II", raw)
                    assert cpu == batch.cpu
                    got[cpu].append(i)
                if sum(map(len, got.values())) == 2 * n:
                    break
        stream.close()
        for t in threads:
            t.join()
    assert got == {0: list(range(n)), 1: list(range(n))}
    for b in bufs:
        b.close()
    sys.close_all()


async def test_a_slow_reader_loses_records_and_sees_lost_counts_while_producers_never_block():
    sys = open_kernel("sim", cpus=2)
    bufs = [OutputBuffer(sys, cpu, pages=1) for cpu in range(2)]
    n = 500
    dropped = {0: 0, 1: 0}

    def produce(buf):
        for i in range(n):
            ret = buf.event.output(struct.pack("<I", i) + bytes(60))
            assert ret in (0, -errno.ENOSPC)
            dropped[buf.cpu] += ret != 0

    async with open_reactor(sys) as reactor:
        stream = PerfStream(reactor, bufs)
        threads = [threading.Thread(target=produce, args=(b,)) for b in bufs]
        for t in threads:
            t.start()
        for t in threads:  # the reader is not reading at all: the producers must still finish
            t.join(timeout=30)
            assert not t.is_alive()
        seen = {0: 0, 1: 0}
        lost = {0: 0, 1: 0}
        last = set()
        with trio.fail_after(10):
            async for batch in stream:
                seen[batch.cpu] += len(batch.samples)
                lost[batch.cpu] += batch.lost
                if b"last" in batch.samples:
                    last.add(batch.cpu)
                if seen == {c: n - dropped[c] for c in (0, 1)}:
                    # Linux writes the LOST record ahead of the next sample that fits: send one.
                    for b in bufs:
                        assert b.event.output(b"last") == 0
                if len(last) == 2:
                    break
        stream.close()
    assert lost == dropped and all(v > 0 for v in lost.values())
    assert stream.lost == lost
    for b in bufs:
        b.close()
    sys.close_all()


class _ListRing:
    """A ring-buffer-shaped source over an eventfd: next() pops what a producer queued."""

    def __init__(self, sys) -> None:
        self.sys = sys
        self.fd = sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.items: list[bytes] = []
        self.lock = threading.Lock()

    def push(self, data: bytes) -> None:
        with self.lock:
            self.items.append(data)
        self.sys.write(self.fd, _U64.pack(1))

    def next(self) -> bytes | None:
        with self.lock:
            if not self.items:
                try:
                    self.sys.read(self.fd, 8)
                except BlockingIOError:
                    pass
                return None
            return self.items.pop(0)


async def test_ring_stream_yields_records_in_order(sys):
    ring = _ListRing(sys)
    async with open_reactor(sys) as reactor:
        stream = RingStream(reactor, ring)

        def produce():
            for i in range(100):
                ring.push(b"r%d" % i)
                if i % 10 == 0:
                    time.sleep(0.002)

        threading.Thread(target=produce).start()
        got = []
        with trio.fail_after(20):
            async for rec in stream:
                got.append(rec)
                if len(got) == 100:
                    break
        stream.close()
    assert got == [b"r%d" % i for i in range(100)]
    sys.close(ring.fd)


async def test_a_slow_consumer_of_a_real_kprobe_loses_records_and_the_cpus_keep_running():
    """opensnoop on the storm workload, one page per CPU, a consumer that naps between batches."""
    from pathlib import Path

    from loader.ebpf import Ebpf
    from loader.perf_buffer import PerfEventArray

    sys = open_kernel("sim", cpus=2)
    obj = Path(__file__).resolve().parent.parent / "examples" / "opensnoop.bpf.o"
    ebpf = Ebpf.load_file(str(obj), kernel=sys)
    prog = ebpf.program("opensnoop")
    prog.load()
    link = prog.attach("do_sys_openat2")
    perf = PerfEventArray(ebpf.take_map("events"))
    buffers = perf.open_all(page_count=1)
    cpus = sys.kernel.cpus.cpus
    samples, lost, progressed = 0, 0, []
    try:
        async with open_reactor(sys) as reactor:
            stream = PerfStream(reactor, buffers)
            sys.start_workload("storm")
            with trio.fail_after(60):
                async for batch in stream:
                    samples += len(batch.samples)
                    lost += batch.lost
                    if lost and len(progressed) >= 2:
                        break
                    steps = [c.steps for c in cpus]
                    await trio.sleep(0.2)  # the slow part: the CPUs must not wait for us
                    progressed.append([c.steps > s for c, s in zip(cpus, steps, strict=True)])
            sys.stop_workload()
            stream.close()
    finally:
        link.detach()
        perf.close()
        ebpf.close()
        sys.close_all()
    assert samples > 0 and lost > 0
    # A CPU that waited for the reader would make no progress while the reader naps; one that
    # does not may still miss a nap now and then on a loaded machine (it is an OS thread).
    for cpu in range(len(cpus)):
        assert sum(p[cpu] for p in progressed) * 2 >= len(progressed)


async def test_an_error_in_the_block_comes_out_as_itself_and_closes_the_reactor():
    sys = open_kernel("sim")
    before = fd_snapshot(sys)
    with pytest.raises(KeyError, match="boom"):
        async with open_reactor(sys):
            raise KeyError("boom")
    assert fd_snapshot(sys) == before


async def test_a_hung_up_buffer_ends_its_stream_instead_of_spinning(sys):
    """A BPF output event with no ring mapped polls EPOLLHUP forever (perf_poll, on both kernels)."""

    class Unmapped:
        def __init__(self) -> None:
            self.cpu = 0
            self.fd = sys.perf_event_open(output_attr(), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)

        def read_events(self):
            return [], 0

    buf = Unmapped()
    async with open_reactor(sys) as reactor:
        stream = PerfStream(reactor, [buf])
        with trio.fail_after(10):
            batches = [b async for b in stream]
        assert batches == [] and stream.buffers == {}
        assert reactor.wakeups < 5
    sys.close(buf.fd)
