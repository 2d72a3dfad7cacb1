"""The UnifiedMap family's base: one kernel map object, its per-CPU storage and its file.

Why this shape: the bpf() commands (kernel_sim/bpf/map_cmds.py) and the VM's helpers work on
the same object. The syscall side (``sys_*``) takes and returns user-visible bytes and raises
OSError with Linux's errno; the program side (``prog_*``) returns 0 / -errno like the Linux
helpers and hands out addresses in the VM address space (kernel_sim/vm/memory.py), because a
BPF program dereferences map values directly. Value storage is mapped into that address
space once, at creation, as 8-byte-stride slots, and unmapped at release.

Lifetime follows Linux: ``refs`` counts every holder (map files, programs using the map, pins,
map-in-map slots) and ``usercnt`` counts user-visible holders only (files and pins); the
map is freed when ``refs`` reaches zero.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import threading
from typing import TYPE_CHECKING, ClassVar

from ...fs.file import File, WaitQueue, oserror
from ...uapi.bpf import (
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    BpfMapInfo,
    MapCreateAttr,
)
from ...uapi.epoll import EPOLLERR, O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY

if TYPE_CHECKING:
    from ...kernel import Kernel

ENOTSUPP = 524  # Linux's kernel-internal "operation not supported", seen by userland as 524
ACCESS_MASK = BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
KMALLOC_MAX_SIZE = 4 << 20
PCPU_MIN_UNIT_SIZE = 32 << 10
NUMA_NO_NODE = 0xFFFFFFFF
SIM_MAX_MAP_BYTES = 1 << 36  # value storage is lazily committed memory; past this, ENOMEM
SIM_MAX_OBJECTS = 1 << 24  # per-element Python bookkeeping (fd array slots, LRU nodes); past this, ENOMEM
EAGER_BYTES = 1 << 20  # smaller buffers are bytearrays, larger ones anonymous mappings


def round8(n: int) -> int:
    return (n + 7) & ~7


def flags_access_ok(flags: int) -> bool:
    """Linux's bpf_map_flags_access_ok: a map cannot be both read-only and write-only for programs."""
    return (flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)) != (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)


def numa_node(attr: MapCreateAttr) -> int:
    return attr.numa_node if attr.map_flags & BPF_F_NUMA_NODE else NUMA_NO_NODE


def file_flags(map_flags: int) -> int:
    """Linux's bpf_get_file_flag: the open mode a map fd gets from BPF_F_RDONLY / BPF_F_WRONLY."""
    if map_flags & BPF_F_RDONLY and map_flags & BPF_F_WRONLY:
        raise oserror(errno.EINVAL)
    if map_flags & BPF_F_RDONLY:
        return O_RDONLY
    if map_flags & BPF_F_WRONLY:
        return O_WRONLY
    return O_RDWR


def check_update_flags(flags: int) -> None:
    if (flags & ~BPF_F_LOCK) > BPF_EXIST:
        raise oserror(errno.EINVAL)


def alloc_buffer(size: int):
    """Zeroed value storage. Large maps get an anonymous private mapping, so, as in Linux,
    a huge array costs only the pages that are touched; a mapping the host refuses is ENOMEM."""
    if size > SIM_MAX_MAP_BYTES:
        raise oserror(errno.ENOMEM)
    if size <= EAGER_BYTES:
        return bytearray(max(size, 8))
    try:
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, OverflowError, ValueError, MemoryError):
        raise oserror(errno.ENOMEM) from None


class PerCpuVariants:
    """Per-CPU copies of a map's value slots: one buffer (and VM region) per possible CPU.

    The user-visible form of a slot is every CPU's copy, each padded to 8 bytes, laid end to
    end (Linux's bpf_percpu_*_copy / _update copy the padded 8-byte words, padding included).
    """

    def __init__(self, kernel: Kernel, slots: int, value_size: int) -> None:
        self.ncpus = kernel.ncpus
        self.value_size = value_size
        self.stride = round8(value_size)
        if slots * self.stride * self.ncpus > SIM_MAX_MAP_BYTES:
            raise oserror(errno.ENOMEM)
        self.bufs = [alloc_buffer(slots * self.stride) for _ in range(self.ncpus)]
        self.bases = [kernel.vm.map_region(b) for b in self.bufs]
        self._vm = kernel.vm

    @property
    def user_size(self) -> int:
        return self.stride * self.ncpus

    def addr(self, cpu: int, slot: int) -> int:
        """The CPU's copy; 0 for a CPU that does not exist (bpf_map_lookup_percpu_elem answers NULL)."""
        if not 0 <= cpu < self.ncpus:
            return 0
        return self.bases[cpu] + slot * self.stride

    def gather(self, slot: int) -> bytes:
        off, s = slot * self.stride, self.stride
        return b"".join(bytes(buf[off:off + s]) for buf in self.bufs)

    def scatter(self, slot: int, data: bytes) -> None:
        off, s = slot * self.stride, self.stride
        for cpu, buf in enumerate(self.bufs):
            buf[off:off + s] = data[cpu * s:(cpu + 1) * s]

    def write_one(self, cpu: int, slot: int, value: bytes, zero_others: bool = False) -> None:
        off = slot * self.stride
        for c, buf in enumerate(self.bufs):
            if c == cpu % self.ncpus:
                buf[off:off + self.value_size] = value
            elif zero_others:
                buf[off:off + self.stride] = bytes(self.stride)

    def clear(self, slot: int) -> None:
        off = slot * self.stride
        for buf in self.bufs:
            buf[off:off + self.stride] = bytes(self.stride)

    def release(self) -> None:
        for base in self.bases:
            self._vm.unmap_region(base)
        self.bases = []


class UnifiedMap:
    """Base of every map type. Subclasses set ``map_type`` and override the ops they support."""

    map_type: ClassVar[int] = -1
    percpu: ClassVar[bool] = False
    batch_ops: ClassVar[frozenset[str]] = frozenset()  # of "lookup", "lookup_and_delete", "update", "delete"

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        self.kernel = kernel
        self.key_size = attr.key_size
        self.value_size = attr.value_size
        self.max_entries = attr.max_entries
        self.map_flags = attr.map_flags
        self.map_extra = attr.map_extra
        self.name = ""
        self.btf = None
        self.btf_key_type_id = 0
        self.btf_value_type_id = 0
        self.btf_vmlinux_value_type_id = 0
        self.lock = threading.RLock()
        self.wq = WaitQueue()
        self.frozen = False
        self.spin_lock_off: int | None = None  # a struct bpf_spin_lock in the value (from BTF)
        self.writable_mmaps = 0
        self.refs = 0
        self.usercnt = 0
        self.id = 0
        self.released = False
        self._refs_lock = threading.Lock()

    # -- creation rules ----------------------------------------------------------------------
    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        """Linux's map_alloc_check / the attribute checks of map_alloc: raise OSError."""
        raise oserror(errno.EINVAL)

    # -- lifetime ------------------------------------------------------------------------------
    def register(self) -> None:
        self.id = self.kernel.ids["map"].alloc(self)

    def get(self) -> UnifiedMap:
        with self._refs_lock:
            self.refs += 1
        return self

    def put(self) -> None:
        with self._refs_lock:
            self.refs -= 1
            last = self.refs == 0 and not self.released
            if last:
                self.released = True
        if last:
            self.release()

    def get_uref(self) -> None:
        with self._refs_lock:
            self.usercnt += 1
        self.get()

    def put_uref(self) -> None:
        with self._refs_lock:
            self.usercnt -= 1
            last = self.usercnt == 0
        if last:
            self.release_uref()
        self.put()

    def release_uref(self) -> None:
        """The last file or pin went away (Linux's map_release_uref): fd arrays clear here."""

    def release(self) -> None:
        """Free the id, the VM regions and whatever the map holds."""
        if self.id:
            self.kernel.ids["map"].remove(self.id)
        self.kernel.vm.drop_handle(self)
        btf = self.btf
        if btf is not None:
            btf.refs -= 1
            if btf.refs == 0:
                btf.kernel.ids["btf"].remove(btf.id)
            self.btf = None
        self.free_storage()

    def free_storage(self) -> None:
        pass

    def open_file(self, flags: int = 0) -> File:
        """MAP_GET_FD_BY_ID / OBJ_GET: a new file; flags are BPF_F_RDONLY / BPF_F_WRONLY."""
        if flags & ~(BPF_F_RDONLY | BPF_F_WRONLY):
            raise oserror(errno.EINVAL)
        return BpfMapFile(self, file_flags(flags))

    # -- syscall side --------------------------------------------------------------------------
    def lock_flag(self, flags: int) -> int:
        """BPF_F_LOCK is valid only with a bpf_spin_lock in the value: EINVAL, else the flags without it."""
        if flags & BPF_F_LOCK:
            if self.spin_lock_off is None:
                raise oserror(errno.EINVAL)
            return flags & ~BPF_F_LOCK
        return flags

    def hide_lock(self, value: bytes) -> bytes:
        """Userland never sees or sets the lock word (Linux copies around special fields)."""
        off = self.spin_lock_off
        if off is None:
            return value
        return value[:off] + bytes(4) + value[off + 4:]

    @property
    def user_value_size(self) -> int:
        """How many value bytes userland passes (Linux's bpf_map_value_size)."""
        return self.value_size

    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        raise oserror(ENOTSUPP)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        raise oserror(ENOTSUPP)

    def sys_delete(self, key: bytes | None) -> None:
        raise oserror(ENOTSUPP)

    def sys_get_next_key(self, key: bytes | None) -> bytes:
        raise oserror(ENOTSUPP)

    def sys_lookup_and_delete(self, key: bytes | None, flags: int) -> bytes:
        raise oserror(ENOTSUPP)

    def poll(self) -> int:
        return EPOLLERR

    def mmap(self, file: BpfMapFile, length: int, prot: int, flags: int, offset: int):
        raise oserror(ENOTSUPP)

    def file_released(self, file: BpfMapFile) -> None:
        """A file of this map was closed (perf event arrays drop the entries it installed)."""

    # -- program side (helpers): 0 / -errno -------------------------------------------------------
    def prog_lookup(self, key: bytes, cpu: int = 0) -> int:
        return 0

    def prog_update(self, key: bytes, value: bytes, flags: int = 0, cpu: int = 0) -> int:
        return -errno.EINVAL

    def prog_delete(self, key: bytes) -> int:
        return -errno.EINVAL

    def prog_elements(self, cpu: int = 0) -> list[tuple[bytes, int]] | None:
        """For bpf_for_each_map_elem: (key, value address) of every element, in the map's walk
        order, for the given CPU's copy; None where Linux has no iteration for the map type."""
        return None

    def prog_push(self, value: bytes, flags: int = 0) -> int:
        return -errno.EINVAL

    def prog_pop(self) -> bytes | int:
        return -errno.EINVAL

    def prog_peek(self) -> bytes | int:
        return -errno.EINVAL

    def direct_value_size(self) -> int | None:
        """Value size when BPF_PSEUDO_MAP_VALUE may point into the map, else None."""
        return None

    def direct_value_addr(self, off: int) -> int:
        raise oserror(ENOTSUPP)

    # -- info ------------------------------------------------------------------------------------
    def info(self) -> BpfMapInfo:
        return BpfMapInfo(
            type=self.map_type, id=self.id, key_size=self.key_size, value_size=self.value_size,
            max_entries=self.max_entries, map_flags=self.map_flags, name=self.name.encode(),
            btf_vmlinux_value_type_id=self.btf_vmlinux_value_type_id,
            btf_id=self.btf.id if self.btf is not None else 0,
            btf_key_type_id=self.btf_key_type_id, btf_value_type_id=self.btf_value_type_id,
            map_extra=self.map_extra,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id} name={self.name!r}>"


class BpfMapFile(File):
    """An open map (Linux's anon inode "bpf-map"): its open mode limits the syscall side."""

    name = "bpf-map"
    is_bpf_map = True
    info_type = BpfMapInfo
    pollable = True

    def __init__(self, bpf_map: UnifiedMap, flags: int = O_RDWR) -> None:
        super().__init__(flags)
        self.map = bpf_map
        self.wq = bpf_map.wq
        bpf_map.get_uref()

    @property
    def can_read(self) -> bool:
        return (self.flags & O_ACCMODE) != O_WRONLY

    @property
    def can_write(self) -> bool:
        """Linux's map_get_sys_perms: the file mode, minus writes once the map is frozen."""
        return (self.flags & O_ACCMODE) != O_RDONLY and not self.map.frozen

    def bpf_info(self, user: BpfMapInfo) -> BpfMapInfo:
        return self.map.info()

    def poll(self) -> int:
        return self.map.poll()

    def mmap(self, length: int, prot: int, flags: int, offset: int):
        """The mm layer's checks against the fd's open mode come first (EACCES), then the map's."""
        acc = self.flags & O_ACCMODE
        if acc == O_WRONLY or (acc == O_RDONLY and prot & mmap.PROT_WRITE and flags & mmap.MAP_SHARED):
            raise oserror(errno.EACCES)
        return self.map.mmap(self, length, prot, flags, offset)

    def release(self) -> None:
        self.map.file_released(self)
        self.map.put_uref()


class MapMapping(mmap.mmap):
    """A user mapping of map memory that tells the map when it goes (writable mmaps block freeze)."""

    def __new__(cls, fileno: int, length: int, on_unmap=None, **kw):
        obj = super().__new__(cls, fileno, length, **kw)
        obj._on_unmap = on_unmap
        return obj

    def close(self) -> None:
        hook, self._on_unmap = self._on_unmap, None
        super().close()
        if hook is not None:
            hook()

    munmap = close


def u32(key: bytes) -> int:
    return int.from_bytes(key[:4], "little")


def info_size() -> int:
    return ctypes.sizeof(BpfMapInfo)
