"""Array maps: array, percpu_array, and the fd arrays perf_event_array, prog_array, array_of_maps.

Arrays keep every value in one buffer of ``max_entries`` 8-byte-stride slots mapped into the VM
(one per CPU for percpu_array). A BPF_F_MMAPABLE array keeps that buffer in shared pages, so a
user mmap and the program's view are the same bytes. fd arrays store kernel objects that
userland names by fd (perf events, programs, maps) and holds references on them.
"""

from __future__ import annotations

import errno
import mmap
from typing import TYPE_CHECKING

from ...fs.file import File, oserror
from ...mm import PAGE_SIZE, SharedPages
from ...task import current
from ...uapi.bpf import (
    BPF_ANY,
    BPF_F_CURRENT_CPU,
    BPF_F_INDEX_MASK,
    BPF_F_INNER_MAP,
    BPF_F_MMAPABLE,
    BPF_F_NUMA_NODE,
    BPF_F_PRESERVE_ELEMS,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY_PROG,
    BPF_F_XDP_HAS_FRAGS,
    BPF_NOEXIST,
    MapCreateAttr,
    MapType,
)
from ...uapi.epoll import O_ACCMODE, O_RDONLY
from .base import (
    ACCESS_MASK,
    ENOTSUPP,
    NUMA_NO_NODE,
    PCPU_MIN_UNIT_SIZE,
    SIM_MAX_MAP_BYTES,
    SIM_MAX_OBJECTS,
    BpfMapFile,
    MapMapping,
    PerCpuVariants,
    UnifiedMap,
    alloc_buffer,
    check_update_flags,
    flags_access_ok,
    numa_node,
    round8,
    u32,
)

if TYPE_CHECKING:
    from ...kernel import Kernel

ARRAY_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_MMAPABLE | ACCESS_MASK | BPF_F_INNER_MAP | BPF_F_PRESERVE_ELEMS
INT_MAX = 0x7FFFFFFF


def _page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


class ArrayMap(UnifiedMap):
    map_type = MapType.ARRAY
    batch_ops = frozenset({"lookup", "update"})

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        """Linux's array_map_alloc_check."""
        flags = attr.map_flags
        percpu = attr.map_type == MapType.PERCPU_ARRAY
        if (attr.max_entries == 0 or attr.key_size != 4 or attr.value_size == 0
                or flags & ~ARRAY_CREATE_FLAG_MASK or not flags_access_ok(flags)
                or (percpu and numa_node(attr) != NUMA_NO_NODE)):
            raise oserror(errno.EINVAL)
        if attr.map_type != MapType.ARRAY and flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP):
            raise oserror(errno.EINVAL)
        if attr.map_type != MapType.PERF_EVENT_ARRAY and flags & BPF_F_PRESERVE_ELEMS:
            raise oserror(errno.EINVAL)
        if attr.value_size > INT_MAX:
            raise oserror(errno.E2BIG)
        if percpu and round8(attr.value_size) > PCPU_MIN_UNIT_SIZE:
            raise oserror(errno.E2BIG)

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        super().__init__(kernel, attr)
        self.stride = round8(self.value_size)
        self.pages: SharedPages | None = None
        self._alloc_storage(kernel)

    def _alloc_storage(self, kernel: Kernel) -> None:
        size = self.max_entries * self.stride
        if size > SIM_MAX_MAP_BYTES:
            raise oserror(errno.ENOMEM)
        if self.map_flags & BPF_F_MMAPABLE:
            self.pages = SharedPages(_page_align(size), "bpf_array")
            self.values = memoryview(self.pages.kmap)
        else:
            self.values = memoryview(alloc_buffer(size))
        self.base = kernel.vm.map_region(self.values)

    def free_storage(self) -> None:
        self.kernel.vm.unmap_region(self.base)
        self.values.release()
        if self.pages is not None:
            self.pages.close()

    # -- syscall side ------------------------------------------------------------------------
    def _index(self, key: bytes | None) -> int:
        return u32(key)

    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        idx = u32(key)
        if idx >= self.max_entries:
            raise oserror(errno.ENOENT)
        off = idx * self.stride
        return bytes(self.values[off:off + self.value_size])

    def _check_update(self, idx: int, flags: int) -> None:
        check_update_flags(flags)
        flags = self.lock_flag(flags)
        if idx >= self.max_entries:
            raise oserror(errno.E2BIG)
        if flags & BPF_NOEXIST:
            raise oserror(errno.EEXIST)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        idx = u32(key)
        self._check_update(idx, flags)
        off = idx * self.stride
        with self.lock:
            self.values[off:off + self.value_size] = value

    def sys_delete(self, key: bytes | None) -> None:
        raise oserror(errno.EINVAL)

    def sys_get_next_key(self, key: bytes | None) -> bytes:
        if key is None or u32(key) >= self.max_entries:
            return (0).to_bytes(4, "little")
        idx = u32(key)
        if idx == self.max_entries - 1:
            raise oserror(errno.ENOENT)
        return (idx + 1).to_bytes(4, "little")

    # -- mmap ----------------------------------------------------------------------------------
    def mmap(self, file: BpfMapFile, length: int, prot: int, flags: int, offset: int):
        """Linux's bpf_map_mmap + array_map_mmap for BPF_F_MMAPABLE arrays (the same pages)."""
        write = bool(prot & mmap.PROT_WRITE)
        if self.spin_lock_off is not None:
            raise oserror(ENOTSUPP)
        if not flags & mmap.MAP_SHARED or (file.flags & O_ACCMODE) == O_RDONLY:
            raise oserror(errno.EINVAL)
        with self.lock:
            if write:
                if self.frozen:
                    raise oserror(errno.EPERM)
                if self.map_flags & BPF_F_RDONLY_PROG:
                    raise oserror(errno.EACCES)
            if self.pages is None or offset + _page_align(length) > self.pages.size:
                raise oserror(errno.EINVAL)
            on_unmap = None
            if write:
                self.writable_mmaps += 1

                def on_unmap() -> None:
                    with self.lock:
                        self.writable_mmaps -= 1

            return MapMapping(self.pages.fd, length, on_unmap, flags=mmap.MAP_SHARED, prot=prot, offset=offset)

    # -- program side ----------------------------------------------------------------------------
    def prog_lookup(self, key: bytes, cpu: int = 0) -> int:
        idx = int.from_bytes(key[:4], "little")
        if idx >= self.max_entries:
            return 0
        return self.base + idx * self.stride

    def prog_update(self, key: bytes, value: bytes, flags: int = 0, cpu: int = 0) -> int:
        try:
            idx = int.from_bytes(bytes(key[:4]), "little")
            self._check_update(idx, flags)
        except OSError as e:
            return -e.errno
        off = idx * self.stride
        self.values[off:off + self.value_size] = bytes(value)[:self.value_size]
        return 0

    def prog_delete(self, key: bytes) -> int:
        return -errno.EINVAL

    def prog_elements(self, cpu: int = 0) -> list[tuple[bytes, int]] | None:
        return [(i.to_bytes(4, "little"), self.prog_lookup(i.to_bytes(4, "little"), cpu))
                for i in range(self.max_entries)]

    def direct_value_size(self) -> int | None:
        return self.value_size if self.max_entries == 1 else None

    def direct_value_addr(self, off: int) -> int:
        if self.max_entries != 1:
            raise oserror(ENOTSUPP)
        if off >= self.value_size:
            raise oserror(errno.EINVAL)
        return self.base + off


class PerCpuArrayMap(ArrayMap):
    map_type = MapType.PERCPU_ARRAY
    percpu = True

    def _alloc_storage(self, kernel: Kernel) -> None:
        self.pcpu = PerCpuVariants(kernel, self.max_entries, self.value_size)

    def free_storage(self) -> None:
        self.pcpu.release()

    @property
    def user_value_size(self) -> int:
        return self.pcpu.user_size

    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        idx = u32(key)
        if idx >= self.max_entries:
            raise oserror(errno.ENOENT)
        return self.pcpu.gather(idx)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        idx = u32(key)
        self._check_update(idx, flags)
        with self.lock:
            self.pcpu.scatter(idx, value)

    def mmap(self, file: BpfMapFile, length: int, prot: int, flags: int, offset: int):
        raise oserror(errno.EINVAL)

    def prog_lookup(self, key: bytes, cpu: int = 0) -> int:
        idx = int.from_bytes(key[:4], "little")
        if idx >= self.max_entries:
            return 0
        return self.pcpu.addr(cpu, idx)

    def prog_update(self, key: bytes, value: bytes, flags: int = 0, cpu: int = 0) -> int:
        try:
            idx = int.from_bytes(bytes(key[:4]), "little")
            self._check_update(idx, flags)
        except OSError as e:
            return -e.errno
        self.pcpu.write_one(cpu, idx, bytes(value)[:self.value_size])
        return 0

    def direct_value_size(self) -> int | None:
        return None


# -- fd arrays -------------------------------------------------------------------------------------
def _file(fd: int) -> File:
    return current().files.get(fd)


def inner_map_meta(fd: int) -> UnifiedMap:
    """The map whose shape every inner map of a map-in-map must have (Linux's bpf_map_meta_alloc)."""
    file = _file(fd)
    if not getattr(file, "is_bpf_map", False):
        raise oserror(errno.EINVAL)
    inner = file.map
    if inner.map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        raise oserror(errno.EINVAL)
    return inner


def inner_map_from_fd(meta: UnifiedMap, fd: int) -> UnifiedMap:
    """A referenced inner map for a map-in-map slot; EINVAL when its shape differs from meta."""
    file = _file(fd)
    if not getattr(file, "is_bpf_map", False):
        raise oserror(errno.EINVAL)
    inner = file.map
    same = (inner.map_type == meta.map_type and inner.key_size == meta.key_size
            and inner.value_size == meta.value_size and inner.map_flags == meta.map_flags)
    if same and meta.map_type == MapType.ARRAY and not meta.map_flags & BPF_F_INNER_MAP:
        same = inner.max_entries == meta.max_entries
    if not same:
        raise oserror(errno.EINVAL)
    return inner.get()


class FdArrayMap(ArrayMap):
    """Arrays of kernel objects named by fd from userland (Linux's fd_array maps)."""

    batch_ops = frozenset()

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        if attr.value_size != 4:
            raise oserror(errno.EINVAL)
        if attr.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
            raise oserror(errno.EINVAL)
        super().alloc_check(attr)

    def _alloc_storage(self, kernel: Kernel) -> None:
        if self.max_entries > SIM_MAX_OBJECTS:
            raise oserror(errno.ENOMEM)
        self.entries: list = [None] * self.max_entries

    def free_storage(self) -> None:
        self.clear()

    def clear(self, pred=lambda entry: True) -> None:
        with self.lock:
            dropped = []
            for i, entry in enumerate(self.entries):
                if entry is not None and pred(entry):
                    dropped.append(entry)
                    self.entries[i] = None
        for entry in dropped:
            self.put_ptr(entry)

    def get_ptr(self, fd: int, map_file: File | None):
        raise NotImplementedError

    def put_ptr(self, entry) -> None:
        raise NotImplementedError

    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        raise oserror(ENOTSUPP)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        if flags != BPF_ANY:
            raise oserror(errno.EINVAL)
        idx = u32(key)
        if idx >= self.max_entries:
            raise oserror(errno.E2BIG)
        entry = self.get_ptr(int.from_bytes(value[:4], "little", signed=True), map_file)
        with self.lock:
            old, self.entries[idx] = self.entries[idx], entry
        if old is not None:
            self.put_ptr(old)

    def sys_delete(self, key: bytes | None) -> None:
        idx = u32(key)
        if idx >= self.max_entries:
            raise oserror(errno.E2BIG)
        with self.lock:
            old, self.entries[idx] = self.entries[idx], None
        if old is None:
            raise oserror(errno.ENOENT)
        self.put_ptr(old)

    def _lookup_entry(self, key: bytes | None):
        idx = u32(key)
        entry = self.entries[idx] if idx < self.max_entries else None
        if entry is None:
            raise oserror(errno.ENOENT)
        return entry

    def mmap(self, file: BpfMapFile, length: int, prot: int, flags: int, offset: int):
        raise oserror(errno.EINVAL)

    def prog_lookup(self, key: bytes, cpu: int = 0) -> int:
        return 0

    def prog_update(self, key: bytes, value: bytes, flags: int = 0, cpu: int = 0) -> int:
        return -errno.EINVAL

    def prog_elements(self, cpu: int = 0) -> list[tuple[bytes, int]] | None:
        return None

    def direct_value_size(self) -> int | None:
        return None


class PerfEventArray(FdArrayMap):
    """Perf event fds by index (usually by CPU): the target of bpf_perf_event_output."""

    map_type = MapType.PERF_EVENT_ARRAY

    def get_ptr(self, fd: int, map_file: File | None):
        file = _file(fd)
        if not getattr(file, "is_perf_event", False):
            raise oserror(errno.EBADF)
        return (file.get(), map_file)

    def put_ptr(self, entry) -> None:
        entry[0].put()

    def file_released(self, file: BpfMapFile) -> None:
        """Without BPF_F_PRESERVE_ELEMS, closing a map file drops the events set through it."""
        if not self.map_flags & BPF_F_PRESERVE_ELEMS:
            self.clear(lambda entry: entry[1] is file)

    def event_at(self, index: int):
        entry = self.entries[index] if 0 <= index < self.max_entries else None
        return entry[0] if entry is not None else None

    def perf_event_output(self, cpu: int, flags: int, data: bytes) -> int:
        """bpf_perf_event_output's map side: 0 or -errno as Linux's helper returns."""
        if flags & ~BPF_F_INDEX_MASK:
            return -errno.EINVAL
        index = flags & BPF_F_INDEX_MASK
        if index == BPF_F_CURRENT_CPU:
            index = cpu
        if index >= self.max_entries:
            return -errno.E2BIG
        entry = self.entries[index]
        if entry is None:
            return -errno.ENOENT
        event = entry[0]
        output = getattr(event, "output", None)
        if output is None:
            return -errno.EINVAL
        if event.cpu >= 0 and event.cpu != cpu:
            return -errno.EOPNOTSUPP
        return output(bytes(data))


class ProgArray(FdArrayMap):
    """Programs by index: the tail-call table. Values are prog fds; lookups answer prog ids."""

    map_type = MapType.PROG_ARRAY
    owner: tuple | None = None  # (prog type, xdp frags): fixed by the first program seen

    def prog_map_compatible(self, prog) -> bool:
        """Linux's bpf_prog_map_compatible: every program in (or tail-calling through) a prog
        array has the owner's type; the first program seen, inserted or loaded, sets it."""
        meta = prog.meta
        key = (meta.prog_type, bool(meta.prog_flags & BPF_F_XDP_HAS_FRAGS))
        with self.lock:
            if self.owner is None:
                self.owner = key
            return self.owner == key

    def get_ptr(self, fd: int, map_file: File | None):
        file = _file(fd)
        prog = getattr(file, "prog", None) if getattr(file, "is_bpf_prog", False) else None
        if prog is None or not self.prog_map_compatible(prog):
            raise oserror(errno.EINVAL)
        prog.refs += 1
        return prog

    def put_ptr(self, prog) -> None:
        prog.refs -= 1
        if prog.refs == 0:
            prog.release()

    def release_uref(self) -> None:
        """Linux clears a prog array when its last user reference goes (breaks tail-call cycles)."""
        self.clear()

    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        return self._lookup_entry(key).id.to_bytes(4, "little")

    def prog_at(self, index: int):
        return self.entries[index] if 0 <= index < self.max_entries else None


class ArrayOfMaps(FdArrayMap):
    map_type = MapType.ARRAY_OF_MAPS
    batch_ops = frozenset({"lookup", "update"})

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        self.inner_meta = inner_map_meta(attr.inner_map_fd)
        super().__init__(kernel, attr)

    def get_ptr(self, fd: int, map_file: File | None):
        return inner_map_from_fd(self.inner_meta, fd)

    def put_ptr(self, inner: UnifiedMap) -> None:
        inner.put()

    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        return self._lookup_entry(key).id.to_bytes(4, "little")

    def prog_lookup(self, key: bytes, cpu: int = 0) -> int:
        idx = int.from_bytes(key[:4], "little")
        inner = self.entries[idx] if idx < self.max_entries else None
        return self.kernel.vm.handle_of(inner) if inner is not None else 0


class CgroupArray(FdArrayMap):
    """cgroup fds by index (bpf_current_task_under_cgroup, bpf_skb_under_cgroup). The simulated
    kernel has no cgroup filesystem yet, so only files marked ``is_cgroup`` are accepted."""

    map_type = MapType.CGROUP_ARRAY

    def get_ptr(self, fd: int, map_file: File | None):
        file = _file(fd)
        if not getattr(file, "is_cgroup", False):
            raise oserror(errno.EBADF)
        return file.get()

    def put_ptr(self, entry) -> None:
        entry.put()

    def cgroup_at(self, index: int):
        return self.entries[index] if 0 <= index < self.max_entries else None
