"""The BPF ring buffer reader (loader/ringbuf_reader.py) against kernel_sim's producer.

The reader only sees mmaps, so here its "kernel" is a stand-in whose mmap is kernel_sim's
RingBuf.mmap: the same consumer page / producer page / doubled data mapping Linux gives. The
real-kernel half (a BPF program submitting records) is in test_loader_real_kernel.py.
"""

from __future__ import annotations

import mmap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim.bpf.ringbuf import RingBuf as KernelRing
from kernel_sim.uapi.bpf import MapType
from loader.maps import MapData
from loader.ringbuf_reader import RingBuf


class RingOnlySys:
    """Just enough of the Syscalls seam for a reader: mmap/munmap of one kernel ring."""

    kind = "sim"

    def __init__(self, ring: KernelRing) -> None:
        self.ring = ring

    def mmap(self, fd, length, prot, flags, offset):
        return self.ring.mmap(length, prot, flags, offset)

    def munmap(self, buf):
        buf.munmap() if hasattr(buf, "munmap") else buf.close()

    def close(self, fd):
        pass


def reader(size: int = 4096) -> tuple[KernelRing, RingBuf]:
    ring = KernelRing(size)
    data = MapData(RingOnlySys(ring), 1000, "rb", MapType.RINGBUF, 0, 0, size)
    return ring, RingBuf(data)


def test_submit_discard_busy():
    ring, rb = reader()
    assert rb.next() is None and not rb.readable()
    assert ring.output(b"hello") == 0
    off = ring.reserve(3)
    ring.mem[2 * mmap.PAGESIZE + off : 2 * mmap.PAGESIZE + off + 3] = b"zzz"
    ring.discard(off)
    busy = ring.reserve(4)  # reserved, not committed: the reader must stop here
    ring.output(b"after busy")
    assert rb.next() == b"hello"
    assert rb.next() is None
    assert rb.consumer_pos == 16 + 16  # past "hello" and the discarded record
    ring.mem[2 * mmap.PAGESIZE + busy : 2 * mmap.PAGESIZE + busy + 4] = b"ABCD"
    ring.submit(busy)
    assert rb.drain() == [b"ABCD", b"after busy"]
    assert rb.consumer_pos == rb.producer_pos
    rb.close()


def test_records_wrap_contiguously():
    ring, rb = reader(4096)
    payload = bytes(range(256)) * 3  # 768 bytes: records straddle the end of the data area
    for k in range(40):
        assert ring.output(payload[k:]) == 0
        assert list(rb) == [payload[k:]]
    assert rb.producer_pos > 4 * 4096
    rb.close()


def test_full_ring_refuses_until_consumed():
    ring, rb = reader(4096)
    n = 0
    while ring.output(b"x" * 100) == 0:
        n += 1
    assert n == 4096 // 112
    assert len(rb.drain(limit=2)) == 2
    assert ring.output(b"y" * 100) == 0
    rest = rb.drain()
    assert rest[-1] == b"y" * 100 and len(rest) == n - 1
    rb.close()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=900), st.booleans()), min_size=1, max_size=60))
def test_any_sequence(records):
    ring, rb = reader(4096)
    expect, got = [], []
    for raw, discard in records:
        off = ring.reserve(len(raw))
        if off is None:
            got += rb.drain()
            off = ring.reserve(len(raw))
            assert off is not None
        base = 2 * mmap.PAGESIZE + off
        ring.mem[base : base + len(raw)] = raw
        if discard:
            ring.discard(off)
        else:
            ring.submit(off)
            expect.append(raw)
    got += rb.drain()
    assert got == expect
    rb.close()


def test_closed_ring_cannot_be_read():
    ring, rb = reader()
    rb.close()
    with pytest.raises(ValueError):
        rb.next()
