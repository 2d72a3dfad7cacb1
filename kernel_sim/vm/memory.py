"""The VM's address space: every pointer a BPF program holds names a region and an offset.

Why this shape: a load or store must be bounds-checked against the object it points into,
never touch another object and never crash Python, and it must be cheap in the JIT. An
address is ``(key << 32) | offset``: ``key`` indexes ``AddressSpace.regions`` (a plain dict
of writable buffers: bytearray, memoryview or ctypes arrays) and ``offset`` is the byte offset
in that buffer. A load is ``regions[a >> 32]`` + ``struct.unpack_from(..., a & 0xFFFFFFFF)``;
an unknown key raises KeyError and an offset past the end raises struct.error / IndexError,
which the engines turn into ``VmFault``. Keys live in 0xFFFF0000..0xFFFFFFFF, so addresses
look like kernel addresses (0xffff....) and never collide with real user-space addresses,
which BPF reaches only through bpf_probe_read_user (copy_from_user).

Who maps what:
- each map maps its value storage once, at creation (arrays and pre-allocated hash maps keep
  all values in one buffer; per-CPU maps one buffer per CPU), and unmaps it at release;
  a value pointer is ``base + slot * stride`` (Linux's prealloc semantics: a deleted slot may be
  reused while an old pointer still points at it);
- a ring buffer map maps its kernel view (consumer page, producer page, data twice);
- each program run maps its stack and its ctx (and packet data) under per-run keys
  (``run_keys``) and unmaps them when the run ends.
Map objects are not memory: a register loaded with lddw BPF_PSEUDO_MAP_FD holds the map's
handle address (``handle_of``) which helpers resolve with ``object_at``; dereferencing it
faults.
"""

from __future__ import annotations

import itertools
import mmap
import threading

KEY_SHIFT = 32
OFFSET_MASK = 0xFFFFFFFF
STATIC_KEYS = range(0xFFFF0000, 0xFFFFC000)   # maps, ring buffers: alive as long as their object
RUN_KEYS = range(0xFFFFC000, 0xFFFFF000)      # stacks, ctx, packets of running programs
HANDLE_KEY = 0xFFFFF000                       # map/prog handles: never a region
MAX_BPF_STACK = 512
MAX_CALL_FRAMES = 8
STACK_SIZE = MAX_BPF_STACK * MAX_CALL_FRAMES  # frame i's r10 = stack base + (i+1)*512


def as_region(buf):
    """``buf`` in a form whose items are bytes as ints: bytearray and mmap as they are, anything
    else (ctypes arrays, typed views) as a flat unsigned-byte memoryview of the same memory.

    Why: the JIT reads and writes single bytes by indexing (``region[off]``), which is several
    times cheaper than struct; that needs every region to index to an int in 0..255.
    """
    if isinstance(buf, (bytearray, mmap.mmap)):
        return buf
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class VmFault(Exception):
    """A BPF program touched memory it may not: the run stops, nothing else is affected."""

    def __init__(self, pc: int, addr: int, size: int, what: str = "access") -> None:
        super().__init__(f"invalid {what} of {size} bytes at 0x{addr & 0xFFFFFFFFFFFFFFFF:x} (insn {pc})")
        self.pc = pc
        self.addr = addr
        self.size = size


class AddressSpace:
    """The kernel's table of regions BPF programs may address (one per Kernel)."""

    def __init__(self) -> None:
        self.regions: dict[int, object] = {}
        self._handles: dict[int, object] = {}
        self._static_free = list(reversed(STATIC_KEYS))
        self._run_keys = itertools.cycle(RUN_KEYS)
        self._handle_ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- long-lived regions (maps, ring buffers) -------------------------------------------
    def map_region(self, buf) -> int:
        """Give ``buf`` an address range; returns its base address (offset 0)."""
        with self._lock:
            if not self._static_free:
                raise MemoryError("VM address space exhausted")
            key = self._static_free.pop()
        self.regions[key] = as_region(buf)
        return key << KEY_SHIFT

    def unmap_region(self, base: int) -> None:
        key = base >> KEY_SHIFT
        if self.regions.pop(key, None) is not None:
            with self._lock:
                self._static_free.append(key)

    # -- per-run regions (stack, ctx, packet) ------------------------------------------------
    def run_keys(self, n: int) -> list[int]:
        """n fresh keys for one run; the caller stores its buffers under them and pops them."""
        return [next(self._run_keys) for _ in range(n)]

    # -- object handles (maps for lddw, programs) -----------------------------------------------
    def handle_of(self, obj) -> int:
        """A stable, non-dereferenceable address standing for a kernel object."""
        addr = getattr(obj, "_vm_handle", None)
        if addr is None:
            addr = (HANDLE_KEY << KEY_SHIFT) | (next(self._handle_ids) << 4)
            obj._vm_handle = addr
            self._handles[addr] = obj
        return addr

    def object_at(self, addr: int):
        """The object a handle stands for, or None."""
        return self._handles.get(addr)

    def drop_handle(self, obj) -> None:
        addr = getattr(obj, "_vm_handle", None)
        if addr is not None:
            self._handles.pop(addr, None)

    # -- checked access for helpers ---------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr``, or None when the range is not all mapped."""
        buf = self.regions.get(addr >> KEY_SHIFT)
        off = addr & OFFSET_MASK
        if buf is None or size < 0 or off + size > len(memoryview(buf).cast("B")):
            return None
        return bytes(memoryview(buf).cast("B")[off:off + size])

    def write(self, addr: int, data: bytes) -> bool:
        """Store data at addr if the whole range is mapped; False otherwise (nothing written)."""
        buf = self.regions.get(addr >> KEY_SHIFT)
        off = addr & OFFSET_MASK
        if buf is None:
            return False
        view = memoryview(buf).cast("B")
        if off + len(data) > len(view):
            return False
        view[off:off + len(data)] = data
        return True

    def region(self, addr: int):
        """(buffer, offset) for addr, or (None, 0)."""
        return self.regions.get(addr >> KEY_SHIFT), addr & OFFSET_MASK
