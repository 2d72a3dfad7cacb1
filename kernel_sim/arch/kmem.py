"""Kernel memory of the simulated CPU: text (read-only, executable), rodata, insn slots, stacks.

Kernel text is read-only: a write to a text page faults unless KprobeAuxiliaryOps has made that
page writable (as Linux's text_poke maps the page writable for the patch). Fetching from a
non-executable region faults too, so a kprobe slot must come from executable memory.
"""

from __future__ import annotations

import bisect
import struct
import threading

PAGE = 4096
_U64 = struct.Struct("<Q")


class MemoryFault(Exception):
    """A kernel page fault (an oops): bad address or a permission the page does not have."""

    def __init__(self, addr: int, access: str) -> None:
        super().__init__(f"kernel {access} fault at {addr:#x}")
        self.addr = addr
        self.access = access


class Region:
    def __init__(self, name: str, base: int, size: int, *, write: bool, exec_: bool) -> None:
        self.name = name
        self.base = base
        self.end = base + size
        self.buf = bytearray(size)
        self.write = write
        self.exec = exec_
        self.writable_pages: set[int] = set()  # pages of a read-only region opened for patching

    def can_write(self, addr: int, n: int) -> bool:
        if self.write:
            return True
        first, last = (addr - self.base) // PAGE, (addr + n - 1 - self.base) // PAGE
        return all(p in self.writable_pages for p in range(first, last + 1))


class KernelMemory:
    def __init__(self) -> None:
        self._index: tuple[list[int], list[Region]] = ([], [])  # sorted bases, their regions
        self._lock = threading.Lock()
        self._last = Region("none", 0, 0, write=False, exec_=False)  # the region found last time
        self.generation = 0  # bumped by every write to executable memory (translation caches check it)

    def add(self, name: str, base: int, size: int, *, write: bool, exec_: bool) -> Region:
        """Map a region. The (bases, regions) index is replaced in one assignment, never edited in
        place: a CPU looking an address up meanwhile sees the old index or the new, never a mix
        (inserting into two lists one after the other let a lookup pair a base with the wrong region)."""
        region = Region(name, base, size, write=write, exec_=exec_)
        with self._lock:
            bases, regions = self._index
            i = bisect.bisect(bases, base)
            if (i and regions[i - 1].end > base) or (i < len(regions) and regions[i].base < region.end):
                raise ValueError(f"region {name} overlaps another")
            self._index = (bases[:i] + [base] + bases[i:], regions[:i] + [region] + regions[i:])
        return region

    @property
    def regions(self) -> list[Region]:
        return self._index[1]

    def region_of(self, addr: int, n: int = 1) -> Region:
        last = self._last
        if last.base <= addr and addr + n <= last.end:
            return last
        bases, regions = self._index
        i = bisect.bisect(bases, addr) - 1
        if i >= 0:
            region = regions[i]
            if addr + n <= region.end:
                self._last = region
                return region
        raise MemoryFault(addr, "access")

    def fetch(self, addr: int, n: int) -> bytes:
        """Up to n instruction bytes at addr (fewer at the end of a region)."""
        region = self.region_of(addr)
        if not region.exec:
            raise MemoryFault(addr, "exec")
        off = addr - region.base
        return bytes(region.buf[off : off + n])

    def read(self, addr: int, n: int) -> bytes:
        region = self.region_of(addr, n)
        off = addr - region.base
        return bytes(region.buf[off : off + n])

    def write(self, addr: int, data: bytes) -> None:
        region = self.region_of(addr, len(data))
        if not region.can_write(addr, len(data)):
            raise MemoryFault(addr, "write")
        off = addr - region.base
        region.buf[off : off + len(data)] = data
        if region.exec:
            self.generation += 1

    def read_u64(self, addr: int) -> int:
        region = self.region_of(addr, 8)
        return _U64.unpack_from(region.buf, addr - region.base)[0]

    def write_u64(self, addr: int, value: int) -> None:
        region = self.region_of(addr, 8)
        if not region.write and not region.can_write(addr, 8):
            raise MemoryFault(addr, "write")
        _U64.pack_into(region.buf, addr - region.base, value & 0xFFFFFFFFFFFFFFFF)
        if region.exec:
            self.generation += 1

    def set_writable(self, addr: int, n: int, writable: bool) -> None:
        """Open (or close again) the pages of [addr, addr+n) of a read-only region for writing."""
        region = self.region_of(addr, n)
        pages = range((addr - region.base) // PAGE, (addr + n - 1 - region.base) // PAGE + 1)
        if writable:
            region.writable_pages.update(pages)
        else:
            region.writable_pages.difference_update(pages)
