"""BPF_MAP_TYPE_RINGBUF: Linux's ring buffer layout in shared pages.

Page 0 is the consumer page (consumer_pos, writable by userland), page 1 the producer page
(producer_pos, read-only to userland), then ``max_entries`` bytes of data mapped twice in a row,
so a record that wraps past the end is still contiguous — in the kernel's view (where BPF
programs write reserved samples) and in userland's. Each record has an 8-byte header: u32 len
with BUSY (bit 31) while reserved and DISCARD (bit 30) when discarded, and u32 pg_off; records
are 8-byte aligned.
"""

from __future__ import annotations

import errno
import mmap
import struct
import threading
from collections.abc import Callable

from ..fs.file import oserror
from ..mm import PAGE_SIZE, SharedPages
from ..uapi.bpf import (
    BPF_RB_AVAIL_DATA,
    BPF_RB_CONS_POS,
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    BPF_RB_PROD_POS,
    BPF_RB_RING_SIZE,
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
)

_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<II")
CONSUMER_OFF = 0
PRODUCER_OFF = PAGE_SIZE
DATA_OFF = 2 * PAGE_SIZE


def valid_size(max_entries: int) -> bool:
    """Linux: a power of two and a multiple of the page size."""
    return max_entries >= PAGE_SIZE and max_entries & (max_entries - 1) == 0 and max_entries % PAGE_SIZE == 0


class RingBuf:
    """The producer side (reserve/submit/discard/output/query) and the mappings."""

    def __init__(self, max_entries: int, wake: Callable[[], None] = lambda: None) -> None:
        if not valid_size(max_entries):
            raise oserror(errno.EINVAL)
        self.size = max_entries
        self.mask = max_entries - 1
        self.pages = SharedPages(DATA_OFF + max_entries, "bpf_ringbuf")
        pieces = [(0, PAGE_SIZE), (PAGE_SIZE, PAGE_SIZE), (DATA_OFF, max_entries), (DATA_OFF, max_entries)]
        self._kview = self.pages.map_user_pieces(pieces, mmap.PROT_READ | mmap.PROT_WRITE)
        self.mem = memoryview(self._kview).cast("B")
        self.producer_pos = 0
        self.wake = wake
        self._lock = threading.Lock()
        self.dropped = 0

    # -- positions ------------------------------------------------------------------------
    @property
    def consumer_pos(self) -> int:
        return _U64.unpack_from(self.mem, CONSUMER_OFF)[0]

    def data_view(self) -> memoryview:
        """The kernel's contiguous (double-mapped) view of the data area: 2 * size bytes."""
        return self.mem[DATA_OFF : DATA_OFF + 2 * self.size]

    # -- producer ---------------------------------------------------------------------------
    def reserve(self, size: int) -> int | None:
        """Offset (into data_view) of a reserved sample of ``size`` bytes, or None if full."""
        with self._lock:
            return self._reserve_locked(size)

    def _reserve_locked(self, size: int) -> int | None:
        if size > self.size - BPF_RINGBUF_HDR_SZ or size >= BPF_RINGBUF_DISCARD_BIT:
            return None
        total = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        cons = self.consumer_pos
        prod = self.producer_pos
        if prod + total - cons > self.size:
            self.dropped += 1
            return None
        hdr_off = prod & self.mask
        pg_off = (DATA_OFF + hdr_off) // PAGE_SIZE
        _HDR.pack_into(self.mem, DATA_OFF + hdr_off, size | BPF_RINGBUF_BUSY_BIT, pg_off)
        self.producer_pos = prod + total
        _U64.pack_into(self.mem, PRODUCER_OFF, self.producer_pos)
        return hdr_off + BPF_RINGBUF_HDR_SZ

    def _commit(self, sample_off: int, flags: int, discard: bool) -> bool:
        """Clear BUSY (set DISCARD); True if the consumer should be woken (Linux's rule: it has
        caught up to this record, or the caller forces it)."""
        hdr_off = sample_off - BPF_RINGBUF_HDR_SZ
        (length,) = struct.unpack_from("<I", self.mem, DATA_OFF + hdr_off)
        length &= ~BPF_RINGBUF_BUSY_BIT
        if discard:
            length |= BPF_RINGBUF_DISCARD_BIT
        struct.pack_into("<I", self.mem, DATA_OFF + hdr_off, length)
        rec_pos = self._record_pos(hdr_off)
        return bool(flags & BPF_RB_FORCE_WAKEUP or (not flags & BPF_RB_NO_WAKEUP and rec_pos == self.consumer_pos))

    def _record_pos(self, hdr_off: int) -> int:
        """The logical position of a record header at ring offset hdr_off (near producer_pos)."""
        prod = self.producer_pos
        base = prod & ~self.mask
        pos = base + hdr_off
        return pos - self.size if pos >= prod else pos

    def submit(self, sample_off: int, flags: int = 0) -> None:
        if self._commit(sample_off, flags, discard=False):
            self.wake()

    def discard(self, sample_off: int, flags: int = 0) -> None:
        if self._commit(sample_off, flags, discard=True):
            self.wake()

    def output(self, data: bytes, flags: int = 0) -> int:
        """bpf_ringbuf_output: 0, or -EAGAIN when there is no room.

        Reserve, copy and commit happen under the producer lock, as Linux's helper runs with
        preemption disabled: a thread switch between reserve and commit would leave a BUSY
        record that holds the consumer back while the other CPUs fill the ring behind it.
        """
        with self._lock:
            off = self._reserve_locked(len(data))
            if off is None:
                return -errno.EAGAIN
            self.mem[DATA_OFF + off : DATA_OFF + off + len(data)] = data
            wake = self._commit(off, flags, discard=False)
        if wake:
            self.wake()
        return 0

    def query(self, flags: int) -> int:
        if flags == BPF_RB_AVAIL_DATA:
            return self.producer_pos - self.consumer_pos
        if flags == BPF_RB_RING_SIZE:
            return self.size
        if flags == BPF_RB_CONS_POS:
            return self.consumer_pos
        if flags == BPF_RB_PROD_POS:
            return self.producer_pos
        return 0

    # -- userland side -------------------------------------------------------------------------
    def readable(self) -> bool:
        return self.producer_pos > self.consumer_pos

    def mmap(self, length: int, prot: int, flags: int, offset: int):
        """Userland's mappings: the consumer page read-write; producer page and data read-only."""
        if not flags & mmap.MAP_SHARED:
            raise oserror(errno.EINVAL)
        if length <= 0 or length % PAGE_SIZE or offset % PAGE_SIZE:
            raise oserror(errno.EINVAL)
        if prot & mmap.PROT_WRITE:
            if offset != 0 or length != PAGE_SIZE:
                raise oserror(errno.EPERM)
            return self.pages.map_user(PAGE_SIZE, 0, prot)
        # Read-only views may span the consumer page, producer page and the doubled data.
        total = DATA_OFF + 2 * self.size
        if offset + length > total:
            raise oserror(errno.EINVAL)
        layout = [(0, PAGE_SIZE), (PAGE_SIZE, PAGE_SIZE)]
        layout += [(DATA_OFF + i * PAGE_SIZE, PAGE_SIZE) for i in range(self.size // PAGE_SIZE)] * 2
        first = offset // PAGE_SIZE
        pieces = layout[first : first + length // PAGE_SIZE]
        return self.pages.map_user_pieces(pieces, prot)

    def close(self) -> None:
        self.mem.release()
        self._kview.munmap()
        self.pages.close()
