"""The perf ring buffer behind a BPF output event, laid out as Linux lays it out.

Page 0 is struct perf_event_mmap_page (data_head at 1024, data_tail at 1032, data_offset,
data_size); 2^n data pages follow. The producer (the simulated CPU running a BPF program)
writes PERF_RECORD_SAMPLE records with PERF_SAMPLE_RAW, padded to 8 bytes as Linux pads them,
then publishes data_head; the consumer advances data_tail. When a record does not fit, it is
counted as lost, and a PERF_RECORD_LOST record goes in ahead of the next record that fits.
"""

from __future__ import annotations

import errno
import struct
import threading
from collections.abc import Callable

from ..fs.file import oserror
from ..mm import PAGE_SIZE, SharedPages
from ..uapi.perf import (
    DATA_HEAD_OFFSET,
    DATA_OFFSET_OFFSET,
    DATA_SIZE_OFFSET,
    DATA_TAIL_OFFSET,
    PERF_EVENT_HEADER,
    PERF_RECORD_MISC_KERNEL,
    PerfRecordType,
)

_U64 = struct.Struct("<Q")
_SAMPLE_HEAD = struct.Struct("<IHHI")  # perf_event_header + u32 raw size
_LOST = struct.Struct("<IHHQQ")  # perf_event_header + id + lost
LOST_RECORD_SIZE = _LOST.size  # 24


class PerfRingBuffer:
    """One mmapped perf buffer: ``nr_pages`` data pages (0 or a power of two)."""

    def __init__(self, nr_pages: int, event_id: int, *, wakeup_events: int = 0,
                 watermark: int = 0, wake: Callable[[], None] = lambda: None) -> None:
        self.nr_pages = nr_pages
        self.data_size = nr_pages * PAGE_SIZE
        self.pages = SharedPages(PAGE_SIZE * (1 + nr_pages), "perf_event")
        self.mem = self.pages.kmap
        self.event_id = event_id
        self.lost = 0
        self.lost_total = 0
        self.head = 0
        self.wakeup_events = wakeup_events
        # Linux: without wakeup_events or a watermark, wake at half the buffer.
        self.watermark = watermark if watermark else (0 if wakeup_events else self.data_size // 2)
        self._since_wakeup_events = 0
        self._since_wakeup_bytes = 0
        self.poll_pending = False
        self._wake = wake
        self._lock = threading.Lock()
        _U64.pack_into(self.mem, DATA_OFFSET_OFFSET, PAGE_SIZE)
        _U64.pack_into(self.mem, DATA_SIZE_OFFSET, self.data_size)

    @property
    def tail(self) -> int:
        return _U64.unpack_from(self.mem, DATA_TAIL_OFFSET)[0]

    def _put(self, pos: int, data: bytes) -> None:
        """Copy into the data area at logical position pos, wrapping at the end."""
        off = pos & (self.data_size - 1)
        base = PAGE_SIZE
        first = min(len(data), self.data_size - off)
        self.mem[base + off : base + off + first] = data[:first]
        if first < len(data):
            self.mem[base : base + len(data) - first] = data[first:]

    def output(self, raw: bytes) -> int:
        """Write one raw sample; 0, or -ENOSPC when it does not fit (and is counted lost)."""
        raw_size = (len(raw) + 4 + 7) // 8 * 8 - 4  # Linux pads size + data to 8 bytes
        size = PERF_EVENT_HEADER.size + 4 + raw_size
        if size > 0xFFFF:
            return -errno.E2BIG
        with self._lock:
            if self.data_size == 0:
                self.lost += 1
                self.lost_total += 1
                return -errno.ENOSPC
            need = size + (LOST_RECORD_SIZE if self.lost else 0)
            if self.head + need - self.tail > self.data_size:
                self.lost += 1
                self.lost_total += 1
                return -errno.ENOSPC
            if self.lost:
                self._put(self.head, _LOST.pack(PerfRecordType.LOST, 0, LOST_RECORD_SIZE, self.event_id, self.lost))
                self.head += LOST_RECORD_SIZE
                self.lost = 0
            record = _SAMPLE_HEAD.pack(PerfRecordType.SAMPLE, PERF_RECORD_MISC_KERNEL, size, raw_size)
            self._put(self.head, record + raw + b"\0" * (raw_size - len(raw)))
            self.head += size
            _U64.pack_into(self.mem, DATA_HEAD_OFFSET, self.head)  # publish after the data
            wake = self._account(size)
        if wake:
            self.poll_pending = True
            self._wake()
        return 0

    def _account(self, size: int) -> bool:
        self._since_wakeup_events += 1
        self._since_wakeup_bytes += size
        if self.wakeup_events and self._since_wakeup_events >= self.wakeup_events:
            self._since_wakeup_events = 0
            self._since_wakeup_bytes = 0
            return True
        if self.watermark and self._since_wakeup_bytes >= self.watermark:
            self._since_wakeup_bytes = 0
            return True
        return False

    def readable(self) -> bool:
        """Readiness for poll: a wakeup happened and the consumer has not caught up since."""
        if self.poll_pending and self.tail >= self.head:
            self.poll_pending = False
        return self.poll_pending

    def map_user(self, length: int, prot: int):
        if length != PAGE_SIZE * (1 + self.nr_pages):
            raise oserror(errno.EINVAL)
        return self.pages.map_user(length, 0, prot)

    def close(self) -> None:
        self.pages.close()
