"""perf_event_open for BPF output buffers, on both kernels, and the sim's ring buffer records."""

from __future__ import annotations

import ctypes
import errno
import mmap
import struct

import pytest

from kernel_sim.uapi.epoll import EPOLL_CTL_ADD, EPOLLHUP, EPOLLIN
from kernel_sim.uapi.perf import (
    DATA_HEAD_OFFSET,
    DATA_TAIL_OFFSET,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_ID,
    PERF_FLAG_FD_CLOEXEC,
    PERF_SAMPLE_RAW,
    PerfEventAttr,
    PerfRecordType,
    PerfSwId,
    PerfType,
)
from loader.backends import open_kernel

PAGE = mmap.PAGESIZE
RW = mmap.PROT_READ | mmap.PROT_WRITE


def output_attr(**kw) -> bytearray:
    fields = dict(type=PerfType.SOFTWARE, size=ctypes.sizeof(PerfEventAttr), config=PerfSwId.BPF_OUTPUT,
                  sample_type=PERF_SAMPLE_RAW, wakeup_events=1)
    fields.update(kw)
    return bytearray(bytes(PerfEventAttr(**fields)))


def _errno(call) -> int:
    with pytest.raises(OSError) as e:
        call()
    return e.value.errno


def test_open_errors_as_linux(kernel):
    assert _errno(lambda: kernel.perf_event_open(output_attr(), -1, 99, -1, 0)) == errno.EINVAL
    assert _errno(lambda: kernel.perf_event_open(output_attr(), -1, -1, -1, 0)) == errno.EINVAL
    assert _errno(lambda: kernel.perf_event_open(output_attr(), -1, 0, -1, 0x100)) == errno.EINVAL
    assert _errno(lambda: kernel.perf_event_open(output_attr(type=99), -1, 0, -1, 0)) == errno.ENOENT
    assert _errno(lambda: kernel.perf_event_open(output_attr(config=99), -1, 0, -1, 0)) == errno.ENOENT
    assert _errno(lambda: kernel.perf_event_open(output_attr(type=PerfType.TRACEPOINT, config=99999999),
                                                 -1, 0, -1, 0)) == errno.EINVAL
    small = output_attr(size=8)
    assert _errno(lambda: kernel.perf_event_open(small, -1, 0, -1, 0)) == errno.E2BIG
    assert int.from_bytes(small[4:8], "little") >= ctypes.sizeof(PerfEventAttr)  # the kernel's size
    tail = output_attr(size=ctypes.sizeof(PerfEventAttr) + 8) + bytearray(8)
    tail[-1] = 1
    assert _errno(lambda: kernel.perf_event_open(tail, -1, 0, -1, 0)) == errno.E2BIG


def test_size_zero_means_the_first_layout(kernel):
    fd = kernel.perf_event_open(output_attr(size=0), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    kernel.close(fd)


@pytest.mark.parametrize("pages, ok", [(1, True), (2, True), (3, True), (9, True), (4, False), (6, False)])
def test_mmap_sizes(kernel, pages, ok):
    fd = kernel.perf_event_open(output_attr(), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    if ok:
        m = kernel.mmap(fd, pages * PAGE, RW, mmap.MAP_SHARED, 0)
        data_offset, data_size = struct.unpack_from("<QQ", m, 1040)
        assert (data_offset, data_size) == (PAGE, (pages - 1) * PAGE)
        assert struct.unpack_from("<QQ", m, DATA_HEAD_OFFSET) == (0, 0)
        kernel.munmap(m)
    else:
        assert _errno(lambda: kernel.mmap(fd, pages * PAGE, RW, mmap.MAP_SHARED, 0)) == errno.EINVAL
    kernel.close(fd)


def test_mmap_offset_private_and_remap_rules(kernel):
    fd = kernel.perf_event_open(output_attr(), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    assert _errno(lambda: kernel.mmap(fd, 9 * PAGE, RW, mmap.MAP_SHARED, PAGE)) == errno.EINVAL
    assert _errno(lambda: kernel.mmap(fd, 9 * PAGE, RW, mmap.MAP_PRIVATE, 0)) == errno.EINVAL
    m = kernel.mmap(fd, 9 * PAGE, RW, mmap.MAP_SHARED, 0)
    assert _errno(lambda: kernel.mmap(fd, 5 * PAGE, RW, mmap.MAP_SHARED, 0)) == errno.EINVAL
    kernel.munmap(m)
    kernel.close(fd)


def test_ioctls_read_and_poll(kernel):
    fd = kernel.perf_event_open(output_attr(), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    other = kernel.perf_event_open(output_attr(), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    ids = []
    for f in (fd, other):
        buf = ctypes.create_string_buffer(8)
        assert kernel.ioctl(f, PERF_EVENT_IOC_ID, ctypes.addressof(buf)) == 0
        ids.append(struct.unpack("<Q", buf.raw)[0])
    assert ids[0] != ids[1] and all(ids)
    assert kernel.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) == 0
    assert _errno(lambda: kernel.ioctl(fd, 0x1234, 0)) == errno.ENOTTY
    assert kernel.read(fd, 8) == bytes(8)
    ep = kernel.epoll_create1(0)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN)
    assert kernel.epoll_wait(ep, 4, 0) == [(fd, EPOLLHUP)]  # no buffer mapped yet
    m = kernel.mmap(fd, 3 * PAGE, RW, mmap.MAP_SHARED, 0)
    assert kernel.epoll_wait(ep, 4, 0) == []
    kernel.munmap(m)


def _records(m) -> list[tuple[int, bytes]]:
    head, tail = struct.unpack_from("<QQ", m, DATA_HEAD_OFFSET)
    data_offset, data_size = struct.unpack_from("<QQ", m, 1040)
    out = []
    ring = bytes(m[data_offset : data_offset + data_size])
    while tail < head:
        off = tail % data_size
        rec_type, _misc, size = struct.unpack_from("<IHH", (ring + ring)[off : off + 8])
        body = (ring + ring)[off + 8 : off + size]
        out.append((rec_type, body))
        tail += size
    struct.pack_into("<Q", m, DATA_TAIL_OFFSET, tail)
    return out


def test_sim_samples_are_padded_and_lost_records_counted():
    sys = open_kernel("sim")
    fd = sys.perf_event_open(output_attr(), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    m = sys.mmap(fd, 2 * PAGE, RW, mmap.MAP_SHARED, 0)
    event = sys.task.files.get(fd)
    ep = sys.epoll_create1(0)
    sys.epoll_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN)
    assert event.output(b"abc") == 0
    assert sys.epoll_wait(ep, 4, 0) == [(fd, EPOLLIN)]
    (rec,) = _records(m)
    assert rec[0] == PerfRecordType.SAMPLE
    size = struct.unpack_from("<I", rec[1])[0]
    assert size == 4 and rec[1][4:8] == b"abc\0"  # 4 + 3 bytes padded to 8 with the size word
    assert sys.epoll_wait(ep, 4, 0) == []  # consumer caught up
    payload = bytes(range(200))
    sent = 0
    while event.output(payload) == 0:
        sent += 1
    assert event.output(payload) == -errno.ENOSPC
    recs = _records(m)
    assert len(recs) == sent and all(r[1][4:204] == payload for r in recs)
    assert event.output(b"x") == 0
    lost, sample = _records(m)
    assert lost[0] == PerfRecordType.LOST
    assert struct.unpack("<QQ", lost[1])[1] == 2
    assert sample[0] == PerfRecordType.SAMPLE
