"""PerfEventArray and PerfBuffer: per-CPU BPF output perf events, read from their mmap.

Linux's perf ring (and kernel_sim's copy of it) is one perf_event_mmap_page (data_head at
1024, data_tail at 1032) followed by 2^n data pages of records: perf_event_header {u32 type;
u16 misc; u16 size} then, for PERF_RECORD_SAMPLE with PERF_SAMPLE_RAW, {u32 size; data}, and
for PERF_RECORD_LOST {u64 id; u64 lost}. Records are 8-byte aligned, so a header never wraps
but a sample's payload may: it is copied in two pieces. The reader follows Aya's PerfBuffer:
read data_head once, walk records from data_tail, skip unknown record types, stop early when
the caller's event budget is used up, and publish data_tail once at the end.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from typing import Any

from kernel_sim.uapi.bpf import MapType
from kernel_sim.uapi.perf import (
    DATA_HEAD_OFFSET,
    DATA_TAIL_OFFSET,
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_FLAG_FD_CLOEXEC,
    PERF_SAMPLE_RAW,
    PerfEventAttr,
    PerfRecordType,
    PerfSwId,
    PerfType,
)

from .btf_values import IntCodec
from .errors import MapError
from .maps import Map, MapData, online_cpus

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<IHH")
_HEADER_SIZE = _HEADER.size  # 8
_SAMPLE = int(PerfRecordType.SAMPLE)
_LOST = int(PerfRecordType.LOST)
DEFAULT_PAGE_COUNT = 2  # Aya's default


def bpf_output_attr(wakeup_events: int = 1) -> bytearray:
    """perf_event_attr for PERF_COUNT_SW_BPF_OUTPUT, as Aya's perf_event_open_bpf builds it."""
    attr = PerfEventAttr(type=PerfType.SOFTWARE, size=ctypes.sizeof(PerfEventAttr), config=PerfSwId.BPF_OUTPUT,
                         sample_type=PERF_SAMPLE_RAW, sample_period=1, wakeup_events=wakeup_events)
    return bytearray(bytes(attr))


class PerfBuffer:
    """One CPU's BPF output event and its mmapped ring (1 + page_count pages)."""

    def __init__(self, sys, cpu: int, page_count: int = DEFAULT_PAGE_COUNT, *, page_size: int = mmap.PAGESIZE) -> None:
        if page_count <= 0 or page_count & (page_count - 1):
            raise MapError(f"invalid page count {page_count}: must be a power of two")
        self.sys = sys
        self.cpu = cpu
        self.page_size = page_size
        self.page_count = page_count
        self.size = page_size * page_count
        self.fd = sys.perf_event_open(bpf_output_attr(), -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
        try:
            self.mem = sys.mmap(self.fd, page_size * (page_count + 1), mmap.PROT_READ | mmap.PROT_WRITE,
                                mmap.MAP_SHARED, 0)
            self.view = memoryview(self.mem).cast("B")
            sys.ioctl(self.fd, PERF_EVENT_IOC_ENABLE, 0)
        except BaseException:
            self._release()
            raise

    # -- ring state -----------------------------------------------------------------------------
    @property
    def data_head(self) -> int:
        return _U64.unpack_from(self.view, DATA_HEAD_OFFSET)[0]

    @property
    def data_tail(self) -> int:
        return _U64.unpack_from(self.view, DATA_TAIL_OFFSET)[0]

    def readable(self) -> bool:
        """Records are waiting (data_head != data_tail)."""
        return self.data_head != self.data_tail

    def _copy(self, start: int, length: int) -> bytes:
        """``length`` bytes of the data area from ring offset ``start``, joining a wrap."""
        base = self.page_size
        start %= self.size
        first = min(length, self.size - start)
        out = bytes(self.view[base + start : base + start + first])
        if first < length:
            out += bytes(self.view[base : base + length - first])
        return out

    def read_events(self, max_events: int | None = None) -> tuple[list[bytes], int]:
        """(samples, lost): every complete record published so far, up to ``max_events`` samples.

        Samples are the raw bytes the program passed to bpf_perf_event_output (Linux pads the
        record to 8 bytes; the raw size field says how many bytes are the sample's, padding
        included, as Aya returns them). ``lost`` sums the PERF_RECORD_LOST counts seen.
        """
        view = self.view
        head = _U64.unpack_from(view, DATA_HEAD_OFFSET)[0]
        tail = _U64.unpack_from(view, DATA_TAIL_OFFSET)[0]
        base = self.page_size
        size = self.size
        events: list[bytes] = []
        lost = 0
        while head != tail:
            if max_events is not None and len(events) >= max_events:
                break
            start = tail % size
            rtype, _misc, rsize = _HEADER.unpack_from(view, base + start)
            if rsize == 0:  # a corrupt ring: never loop forever on it
                tail = head
                break
            if rtype == _SAMPLE:
                at = start + _HEADER_SIZE
                if start + rsize <= size:  # the whole record is contiguous: the common case
                    (sample_size,) = _U32.unpack_from(view, base + at)
                    events.append(bytes(view[base + at + 4 : base + at + 4 + sample_size]))
                else:
                    (sample_size,) = _U32.unpack(self._copy(at, 4))
                    events.append(self._copy(at + 4, sample_size))
            elif rtype == _LOST:
                (count,) = _U64.unpack(self._copy(start + _HEADER_SIZE + 8, 8))
                lost += count
            tail += rsize
        _U64.pack_into(view, DATA_TAIL_OFFSET, tail)
        return events, lost

    # -- lifetime ------------------------------------------------------------------------------------
    def _release(self) -> None:
        view = getattr(self, "view", None)
        if view is not None:
            view.release()
            self.view = None
        mem = getattr(self, "mem", None)
        if mem is not None:
            self.sys.munmap(mem)
            self.mem = None
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.sys.close(fd)

    def close(self) -> None:
        if self.fd >= 0:
            try:
                self.sys.ioctl(self.fd, PERF_EVENT_IOC_DISABLE, 0)
            except OSError:
                pass
        self._release()

    def __enter__(self) -> PerfBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PerfBuffer cpu={self.cpu} fd={self.fd} pages={self.page_count}>"


class PerfEventArray(Map):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY: CPU index -> BPF output perf event fd."""

    MAP_TYPES = (MapType.PERF_EVENT_ARRAY,)

    def __init__(self, map: Map | MapData, key: Any = None, value: Any = None) -> None:
        super().__init__(map, IntCodec(4), IntCodec(4))
        self.buffers: dict[int, PerfBuffer] = {}

    def open(self, cpu: int, page_count: int = DEFAULT_PAGE_COUNT) -> PerfBuffer:
        """Open CPU ``cpu``'s buffer and store its fd at index ``cpu`` (Aya's PerfEventArray::open)."""
        buf = PerfBuffer(self.data.sys, cpu, page_count)
        try:
            self.data.update(IntCodec(4).encode(cpu), IntCodec(4).encode(buf.fd))
        except BaseException:
            buf.close()
            raise
        old = self.buffers.pop(cpu, None)
        if old is not None:
            old.close()
        self.buffers[cpu] = buf
        return buf

    def open_all(self, page_count: int = DEFAULT_PAGE_COUNT) -> list[PerfBuffer]:
        """One buffer per online CPU (parsed from /sys/devices/system/cpu/online)."""
        return [self.open(cpu, page_count) for cpu in online_cpus(self.data.sys)]

    def close(self) -> None:
        for buf in self.buffers.values():
            buf.close()
        self.buffers.clear()
        super().close()
