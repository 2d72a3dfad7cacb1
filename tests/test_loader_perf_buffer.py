"""PerfBuffer reading Linux's perf ring layout: samples, padding, wrap-around and LOST records.

On kernel_sim the producer is the BPF output event itself (BpfOutputEvent.output is what
bpf_perf_event_output calls), so every record the reader sees was written by the kernel side.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim.uapi.perf import DATA_HEAD_OFFSET, DATA_TAIL_OFFSET
from loader.backends import open_kernel
from loader.errors import MapError
from loader.perf_buffer import PerfBuffer


def padded(raw: bytes) -> bytes:
    """What Linux (and Aya) hand back: the raw bytes padded so that 4 + size is 8-aligned."""
    size = (len(raw) + 4 + 7) // 8 * 8 - 4
    return raw + bytes(size - len(raw))


@pytest.fixture
def sim():
    sys = open_kernel("sim", cpus=2)
    yield sys
    sys.close_all()


def producer(sys, buf: PerfBuffer):
    return sys.task.files.get(buf.fd)


def test_samples_in_order(sim):
    with PerfBuffer(sim, 0, page_count=1) as buf:
        ev = producer(sim, buf)
        assert buf.read_events() == ([], 0)
        assert not buf.readable()
        for i in range(5):
            assert ev.output(struct.pack("<I", i) + b"x" * i) == 0
        assert buf.readable()
        events, lost = buf.read_events()
        assert lost == 0
        assert events == [padded(struct.pack("<I", i) + b"x" * i) for i in range(5)]
        assert buf.data_tail == buf.data_head
        assert buf.read_events() == ([], 0)


def test_max_events_leaves_the_rest(sim):
    with PerfBuffer(sim, 1, page_count=1) as buf:
        ev = producer(sim, buf)
        for i in range(4):
            ev.output(bytes([i]) * 4)
        first, _ = buf.read_events(max_events=3)
        assert len(first) == 3 and buf.readable()
        rest, _ = buf.read_events()
        assert rest == [padded(bytes([3]) * 4)]


def test_lost_records_counted_and_wraparound(sim):
    """Fill the ring until it refuses, read, then write across the end of the data area."""
    with PerfBuffer(sim, 0, page_count=1) as buf:
        ev = producer(sim, buf)
        payload = bytes(range(200))
        written = 0
        while ev.output(payload) == 0:
            written += 1
        dropped = 1
        for _ in range(4):
            assert ev.output(payload) != 0
            dropped += 1
        events, lost = buf.read_events()
        assert len(events) == written and lost == 0  # the LOST record goes in before the next sample
        for k in range(3 * written):  # keep going round the ring several times
            assert ev.output(payload[k % 7 :]) == 0
            got, lost_now = buf.read_events()
            if k == 0:
                assert lost_now == dropped
            else:
                assert lost_now == 0
            assert got == [padded(payload[k % 7 :])]
        assert buf.data_head > buf.size * 2  # wrapped at least twice


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=700), min_size=1, max_size=40), st.integers(1, 6))
def test_any_sequence_reads_back(sizes, batch):
    sys = open_kernel("sim", cpus=1)
    try:
        with PerfBuffer(sys, 0, page_count=1) as buf:
            ev = producer(sys, buf)
            sent, received, lost_total, dropped = [], [], 0, 0
            for i, raw in enumerate(sizes):
                if ev.output(raw) == 0:
                    sent.append(padded(raw))
                else:
                    dropped += 1
                if i % batch == 0:
                    got, lost = buf.read_events()
                    received += got
                    lost_total += lost
            got, lost = buf.read_events()
            received += got
            lost_total += lost
            assert ev.output(b"end") == 0
            got, lost = buf.read_events()
            received += got
            lost_total += lost
            assert received == sent + [padded(b"end")]
            assert lost_total == dropped
    finally:
        sys.close_all()


def test_page_count_must_be_power_of_two(sim):
    with pytest.raises(MapError):
        PerfBuffer(sim, 0, page_count=3)


def test_ring_offsets_are_linux(sim):
    with PerfBuffer(sim, 0, page_count=2) as buf:
        producer(sim, buf).output(b"abcd")
        head = struct.unpack_from("<Q", buf.mem, DATA_HEAD_OFFSET)[0]
        assert head == buf.data_head == 16
        buf.read_events()
        assert struct.unpack_from("<Q", buf.mem, DATA_TAIL_OFFSET)[0] == 16
