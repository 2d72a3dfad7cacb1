"""RingBuf: the userland consumer of BPF_MAP_TYPE_RINGBUF, over Linux's mmap layout.

Two mappings, as libbpf and Aya make them: the consumer page (read-write, consumer_pos at 0)
and, read-only from offset one page, the producer page (producer_pos at 0) followed by the
data area mapped twice in a row, so a record that wraps is contiguous. Each record starts with
an 8-byte header {u32 len; u32 pg_off}; bit 31 of len (BUSY) means reserved but not yet
committed (stop there: later records may be complete but order must hold), bit 30 (DISCARD)
means skip it. Records are 8-byte aligned; consumer_pos advances past each one.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

from kernel_sim.uapi.bpf import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    MapType,
)

from .btf_values import IntCodec
from .maps import Map, MapData

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_LEN_MASK = ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) & 0xFFFFFFFF


class RingBuf(Map):
    """Sync reader: ``next()`` returns the next committed sample's bytes or None."""

    MAP_TYPES = (MapType.RINGBUF,)

    def __init__(self, map: Map | MapData, key: Any = None, value: Any = None, *,
                 page_size: int = mmap.PAGESIZE) -> None:
        super().__init__(map, IntCodec(map.key_size) if map.key_size in (1, 2, 4, 8) else bytes,
                         IntCodec(map.value_size) if map.value_size in (1, 2, 4, 8) else bytes)
        self.page_size = page_size
        self._consumer = None
        self._producer = None
        self._cview: memoryview | None = None
        self._pview: memoryview | None = None

    def _map(self) -> None:
        """Map lazily, so a typed view of the map costs nothing until someone reads it."""
        if self._cview is not None:
            return
        if self.data.closed:
            raise ValueError(f"ring buffer {self.name!r} is closed")
        sys = self.data.sys
        size = self.data.max_entries
        self._consumer = sys.mmap(self.data.fd, self.page_size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, 0)
        try:
            self._producer = sys.mmap(self.data.fd, self.page_size + 2 * size, mmap.PROT_READ, mmap.MAP_SHARED,
                                      self.page_size)
        except BaseException:
            sys.munmap(self._consumer)
            self._consumer = None
            raise
        self._cview = memoryview(self._consumer).cast("B")
        self._pview = memoryview(self._producer).cast("B")
        self._mask = size - 1

    @property
    def consumer_pos(self) -> int:
        self._map()
        return _U64.unpack_from(self._cview, 0)[0]

    @property
    def producer_pos(self) -> int:
        self._map()
        return _U64.unpack_from(self._pview, 0)[0]

    def readable(self) -> bool:
        return self.producer_pos > self.consumer_pos

    def next(self) -> bytes | None:
        """The next committed sample (a copy), skipping discarded ones; None when none is ready."""
        self._map()
        cview, pview = self._cview, self._pview
        cons = _U64.unpack_from(cview, 0)[0]
        while True:
            prod = _U64.unpack_from(pview, 0)[0]
            if cons >= prod:
                return None
            hdr = self.page_size + (cons & self._mask)
            (length,) = _U32.unpack_from(pview, hdr)
            if length & BPF_RINGBUF_BUSY_BIT:
                return None
            real = length & _LEN_MASK
            cons += (real + BPF_RINGBUF_HDR_SZ + 7) & ~7
            if length & BPF_RINGBUF_DISCARD_BIT:
                _U64.pack_into(cview, 0, cons)
                continue
            sample = bytes(pview[hdr + BPF_RINGBUF_HDR_SZ : hdr + BPF_RINGBUF_HDR_SZ + real])
            _U64.pack_into(cview, 0, cons)
            return sample

    def drain(self, limit: int | None = None) -> list[bytes]:
        """Every ready sample (up to ``limit``)."""
        out: list[bytes] = []
        while limit is None or len(out) < limit:
            sample = self.next()
            if sample is None:
                break
            out.append(sample)
        return out

    def __iter__(self):
        """Iterate over the samples ready now (not a blocking stream)."""
        while (sample := self.next()) is not None:
            yield sample

    def __len__(self) -> int:
        raise TypeError("a ring buffer has no length; use readable() or drain()")

    def _unmap(self) -> None:
        sys = self.data.sys
        for view_name, mem_name in (("_cview", "_consumer"), ("_pview", "_producer")):
            view = getattr(self, view_name)
            if view is not None:
                view.release()
                setattr(self, view_name, None)
            mem = getattr(self, mem_name)
            if mem is not None:
                sys.munmap(mem)
                setattr(self, mem_name, None)

    def close(self) -> None:
        self._unmap()
        super().close()
