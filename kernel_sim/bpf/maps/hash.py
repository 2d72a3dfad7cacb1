"""Hash maps: hash, percpu_hash, lru_hash, lru_percpu_hash and hash_of_maps.

Keys live in Linux's bucket structure: ``n_buckets = roundup_pow_of_two(max_entries)``, bucket
``jhash(key, seed) & (n_buckets - 1)``, each bucket a list with the newest element first (an
update of an existing key re-inserts it at the head, as Linux's replace-with-new-element does,
except for per-CPU maps which update in place). get_next_key and the batch commands walk that
structure, so iteration order, batch tokens (bucket indexes) and ENOSPC match Linux, exactly so
with BPF_F_ZERO_SEED. Lookups by key go through a dict, so they never hash in Python.

Values live in pre-allocated 8-byte-stride slots mapped into the VM (one buffer, or one per CPU
for the per-CPU maps); an update of an existing key takes a fresh slot and frees the old one
(Linux's prealloc semantics: a stale value pointer may see the slot reused).
"""

from __future__ import annotations

import bisect
import errno
import random
from collections import deque
from typing import TYPE_CHECKING

from ...cpus import current_cpu
from ...fs.file import File, oserror
from ...uapi.bpf import (
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    MapCreateAttr,
    MapType,
)
from .base import (
    ACCESS_MASK,
    ENOTSUPP,
    KMALLOC_MAX_SIZE,
    NUMA_NO_NODE,
    PCPU_MIN_UNIT_SIZE,
    SIM_MAX_MAP_BYTES,
    SIM_MAX_OBJECTS,
    PerCpuVariants,
    UnifiedMap,
    alloc_buffer,
    check_update_flags,
    flags_access_ok,
    numa_node,
    round8,
)
from .jhash import htab_hash
from .lru import BpfLru

if TYPE_CHECKING:
    from ...kernel import Kernel

HTAB_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | ACCESS_MASK | BPF_F_ZERO_SEED
HTAB_ELEM_SIZE = 48  # sizeof(struct htab_elem) on x86_64: bounds key_size + value_size
MAX_BUCKETS = 0xFFFFFFFF // 16  # n_buckets > U32_MAX / sizeof(struct bucket) is E2BIG


def roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


class HashMap(UnifiedMap):
    map_type = MapType.HASH
    lru = False
    batch_ops = frozenset({"lookup", "lookup_and_delete", "update", "delete"})

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        flags = attr.map_flags
        prealloc = not flags & BPF_F_NO_PREALLOC
        percpu_lru = bool(flags & BPF_F_NO_COMMON_LRU)
        if flags & ~HTAB_CREATE_FLAG_MASK or not flags_access_ok(flags):
            raise oserror(errno.EINVAL)
        if not cls.lru and percpu_lru:
            raise oserror(errno.EINVAL)
        if cls.lru and not prealloc:
            raise oserror(ENOTSUPP)
        if numa_node(attr) != NUMA_NO_NODE and (cls.percpu or percpu_lru):
            raise oserror(errno.EINVAL)
        if attr.max_entries == 0 or attr.key_size == 0 or attr.value_size == 0:
            raise oserror(errno.EINVAL)
        if attr.key_size + attr.value_size >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE:
            raise oserror(errno.E2BIG)
        if cls.percpu and round8(attr.value_size) > PCPU_MIN_UNIT_SIZE:
            raise oserror(errno.E2BIG)
        if roundup_pow_of_two(attr.max_entries) > MAX_BUCKETS:
            raise oserror(errno.E2BIG)

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        super().__init__(kernel, attr)
        if self.lru and self.map_flags & BPF_F_NO_COMMON_LRU:
            n = kernel.ncpus
            self.max_entries = (self.max_entries + n - 1) // n * n
        self.n_buckets = roundup_pow_of_two(self.max_entries)
        self.seed = 0 if self.map_flags & BPF_F_ZERO_SEED else random.getrandbits(32)
        self.stride = round8(self.value_size)
        self._pad = bytes(self.stride - self.value_size)
        nslots = self.max_entries + (0 if self.lru else kernel.ncpus)  # LRU nodes are the elements
        if nslots * self.stride * (kernel.ncpus if self.percpu else 1) > SIM_MAX_MAP_BYTES:
            raise oserror(errno.ENOMEM)
        if self.lru and nslots > SIM_MAX_OBJECTS:
            raise oserror(errno.ENOMEM)
        self._slots: dict[bytes, int] = {}
        self._bucket_of: dict[bytes, int] = {}
        self._buckets: dict[int, list[bytes]] = {}
        self._blocks: dict[int, list[int]] = {}  # block (256 buckets) -> its non-empty buckets, sorted
        self._block_list: list[int] = []  # non-empty blocks, sorted
        self._free: deque[int] = deque()  # freed slots, reused oldest first
        self._fresh = 0  # slots never used yet are handed out in order
        self._nslots = nslots
        if self.lru:
            self._slot_key: dict[int, bytes] = {}
            self._lru = BpfLru(self.max_entries, kernel.ncpus, bool(self.map_flags & BPF_F_NO_COMMON_LRU),
                               self._lru_del_from_htab)
        self._alloc_storage(kernel, nslots)

    def _alloc_storage(self, kernel: Kernel, nslots: int) -> None:
        if self.percpu:
            self.pcpu = PerCpuVariants(kernel, nslots, self.value_size)
        else:
            self.values = alloc_buffer(nslots * self.stride)
            self.base = kernel.vm.map_region(self.values)

    def free_storage(self) -> None:
        if self.percpu:
            self.pcpu.release()
        else:
            self.kernel.vm.unmap_region(self.base)
        with self.lock:
            self._slots.clear()

    @property
    def user_value_size(self) -> int:
        return self.pcpu.user_size if self.percpu else self.value_size

    # -- bucket structure --------------------------------------------------------------------
    def _link(self, key: bytes) -> None:
        b = self._bucket_of.get(key)
        if b is None:
            b = self._bucket_of[key] = htab_hash(key, self.seed) & (self.n_buckets - 1)
        lst = self._buckets.get(b)
        if lst is None:
            self._buckets[b] = [key]
            self._mark(b)
        else:
            lst.insert(0, key)

    # Which buckets are non-empty, in order, at two levels so that a map of millions of keys
    # neither rescans empty buckets nor shifts one long sorted list on every insert.
    def _mark(self, b: int) -> None:
        blk = b >> 8
        lst = self._blocks.get(blk)
        if lst is None:
            self._blocks[blk] = [b]
            bisect.insort(self._block_list, blk)
        else:
            bisect.insort(lst, b)

    def _unmark(self, b: int) -> None:
        blk = b >> 8
        lst = self._blocks[blk]
        del lst[bisect.bisect_left(lst, b)]
        if not lst:
            del self._blocks[blk]
            del self._block_list[bisect.bisect_left(self._block_list, blk)]

    def _next_nonempty(self, start: int) -> int | None:
        """The first non-empty bucket >= start, or None."""
        blk = start >> 8
        lst = self._blocks.get(blk)
        if lst:
            i = bisect.bisect_left(lst, start)
            if i < len(lst):
                return lst[i]
        j = bisect.bisect_right(self._block_list, blk)
        if j == len(self._block_list):
            return None
        return self._blocks[self._block_list[j]][0]

    def _unlink(self, key: bytes) -> None:
        b = self._bucket_of[key]
        lst = self._buckets[b]
        lst.remove(key)
        if not lst:
            del self._buckets[b]
            self._unmark(b)

    # -- slot values (overridden by hash_of_maps) ------------------------------------------------
    def _read_user(self, slot: int) -> bytes:
        if self.percpu:
            return self.pcpu.gather(slot)
        off = slot * self.stride
        return bytes(self.values[off:off + self.value_size])

    def _write_user(self, slot: int, value, new: bool) -> None:
        if self.percpu:
            self.pcpu.scatter(slot, value)
            return
        off = slot * self.stride
        self.values[off:off + self.value_size] = value
        if new and self.stride != self.value_size:
            self.values[off + self.value_size:off + self.stride] = bytes(self.stride - self.value_size)

    def _write_prog(self, slot: int, value: bytes, cpu: int, new: bool) -> None:
        if self.percpu:
            self.pcpu.write_one(cpu, slot, value, zero_others=new)
        else:
            self._write_user(slot, value, new)

    def _take_slot(self) -> int:
        if self._free:
            return self._free.popleft()
        slot = self._fresh
        self._fresh += 1
        return slot

    def _drop_slot(self, slot: int) -> None:
        """A slot goes back to the free list (hash_of_maps drops the inner map reference)."""
        self._free.append(slot)

    # -- the operations, under the map lock ------------------------------------------------------
    def _write(self, slot: int, value, cpu: int, from_prog: bool, new: bool) -> None:
        if from_prog:
            self._write_prog(slot, value, cpu, new=new)
        else:
            self._write_user(slot, value, new=new)

    def _move_to_head(self, key: bytes) -> None:
        """An update replaced the element: Linux adds the new one at the bucket's head."""
        lst = self._buckets[self._bucket_of[key]]
        if lst[0] != key:
            lst.remove(key)
            lst.insert(0, key)

    def _update(self, key: bytes, value, flags: int, cpu: int, from_prog: bool) -> None:
        check_update_flags(flags)
        locked = bool(flags & BPF_F_LOCK)
        flags = self.lock_flag(flags)
        with self.lock:
            if locked and key in self._slots:  # BPF_F_LOCK: the value is updated in place, under its lock
                if flags == BPF_NOEXIST:
                    raise oserror(errno.EEXIST)
                self._write(self._slots[key], value, cpu, from_prog, new=False)
                return
            if self.lru:
                self._lru_update(key, value, flags, cpu, from_prog)
                return
            old = self._slots.get(key)
            if old is None and flags == BPF_EXIST:
                raise oserror(errno.ENOENT)
            if old is not None and flags == BPF_NOEXIST:
                raise oserror(errno.EEXIST)
            if old is not None and self.percpu:
                self._write(old, value, cpu, from_prog, new=False)
                return
            if old is None and len(self._slots) >= self.max_entries:
                raise oserror(errno.E2BIG)
            slot = self._take_slot()
            self._write(slot, value, cpu, from_prog, new=True)
            self._slots[key] = slot
            if old is not None:
                self._move_to_head(key)
                self._drop_slot(old)
            else:
                self._link(key)

    def _lru_update(self, key: bytes, value, flags: int, cpu: int, from_prog: bool) -> None:
        """htab_lru_map_update_elem / __htab_lru_percpu_map_update_elem: a node is taken from
        the LRU first (which may evict, even the key being updated), then the flags are checked."""
        lru = self._lru
        node = None
        if not (self.percpu and flags == BPF_EXIST):
            node = lru.pop_free(cpu)
            if node is None:
                raise oserror(errno.ENOMEM)
        old = self._slots.get(key)
        err = 0
        if old is None and flags == BPF_EXIST:
            err = errno.ENOENT
        elif old is not None and flags == BPF_NOEXIST:
            err = errno.EEXIST
        if err:
            if node is not None:
                lru.push_free(node)
            raise oserror(err)
        if old is not None and self.percpu:
            lru.set_ref(old)
            self._write(old, value, cpu, from_prog, new=False)
            if node is not None:
                lru.push_free(node)
            return
        self._write(node, value, cpu, from_prog, new=True)
        self._slots[key] = node
        self._slot_key[node] = key
        if old is not None:
            lru.set_ref(node)
            self._move_to_head(key)
            self._slot_key.pop(old, None)
            lru.push_free(old)
        else:
            self._link(key)

    def _lru_del_from_htab(self, node: int) -> bool:
        """The LRU evicts node: drop its key from the table (False if it holds none)."""
        key = self._slot_key.get(node)
        if key is None or self._slots.get(key) != node:
            return False
        del self._slots[key]
        del self._slot_key[node]
        self._unlink(key)
        del self._bucket_of[key]
        return True

    def _delete(self, key: bytes) -> None:
        with self.lock:
            slot = self._slots.pop(key, None)
            if slot is None:
                raise oserror(errno.ENOENT)
            self._unlink(key)
            del self._bucket_of[key]
            if self.lru:
                self._slot_key.pop(slot, None)
                self._lru.push_free(slot)
            else:
                self._drop_slot(slot)

    # -- syscall side ----------------------------------------------------------------------------
    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        with self.lock:
            slot = self._slots.get(key)
            if slot is None:
                raise oserror(errno.ENOENT)
            return self._read_user(slot)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        self._update(key, value, flags, current_cpu(), from_prog=False)

    def sys_delete(self, key: bytes | None) -> None:
        self._delete(key)

    def sys_lookup_and_delete(self, key: bytes | None, flags: int) -> bytes:
        with self.lock:
            value = self.sys_lookup(key, flags)
            self._delete(key)
            return value

    def sys_get_next_key(self, key: bytes | None) -> bytes:
        with self.lock:
            start = 0
            if key is not None and key in self._slots:
                b = self._bucket_of[key]
                lst = self._buckets[b]
                i = lst.index(key)
                if i + 1 < len(lst):
                    return lst[i + 1]
                start = b + 1
            b = self._next_nonempty(start)
            if b is None:
                raise oserror(errno.ENOENT)
            return self._buckets[b][0]

    def lookup_batch(self, batch: int, max_count: int, delete: bool) -> tuple[list[tuple[bytes, bytes]], int, int]:
        """Linux's __htab_map_lookup_and_delete_batch: whole buckets at a time.

        Returns (entries, next bucket, errno or 0): ENOSPC when the first bucket does not fit,
        ENOENT once the walk passed the last bucket.
        """
        out: list[tuple[bytes, bytes]] = []
        if batch >= self.n_buckets:
            return out, batch, errno.ENOENT
        with self.lock:
            while True:
                nxt = self._next_nonempty(batch)
                if nxt is None:
                    return out, self.n_buckets, errno.ENOENT
                batch = nxt
                keys = list(self._buckets[batch])
                if len(keys) > max_count - len(out):
                    return out, batch, (errno.ENOSPC if not out else 0)
                for k in keys:
                    out.append((k, self._read_user(self._slots[k])))
                    if delete:
                        HashMap._delete(self, k)
                batch += 1
                if batch >= self.n_buckets:
                    return out, batch, errno.ENOENT

    # -- program side ----------------------------------------------------------------------------
    def prog_lookup(self, key: bytes, cpu: int = 0) -> int:
        slot = self._slots.get(key)
        if slot is None:
            return 0
        if self.lru:
            self._lru.set_ref(slot)
        if self.percpu:
            return self.pcpu.addr(cpu, slot)
        return self.base + slot * self.stride

    def prog_update(self, key: bytes, value: bytes, flags: int = 0, cpu: int = 0) -> int:
        if flags <= BPF_EXIST and type(self) is HashMap:
            return self._fast_update(bytes(key), bytes(value), flags)
        try:
            self._update(bytes(key), bytes(value)[:self.value_size], flags, cpu, from_prog=True)
        except OSError as e:
            return -e.errno
        return 0

    def prog_elements(self, cpu: int = 0) -> list[tuple[bytes, int]] | None:
        with self.lock:
            out = []
            b = self._next_nonempty(0)
            while b is not None:
                for key in self._buckets[b]:
                    slot = self._slots[key]
                    out.append((key, self.pcpu.addr(cpu, slot) if self.percpu else self.base + slot * self.stride))
                b = self._next_nonempty(b + 1)
            return out

    def _fast_update(self, key: bytes, value: bytes, flags: int) -> int:
        """bpf_map_update_elem on a plain hash map: _update's semantics without its generality
        (this is the per-event path of most tracing programs)."""
        stride = self.stride
        data = value[:self.value_size] + self._pad
        with self.lock:
            old = self._slots.get(key)
            if old is None:
                if flags == BPF_EXIST:
                    return -errno.ENOENT
                if len(self._slots) >= self.max_entries:
                    return -errno.E2BIG
            elif flags == BPF_NOEXIST:
                return -errno.EEXIST
            slot = self._free.popleft() if self._free else self._take_slot()
            off = slot * stride
            self.values[off:off + stride] = data
            self._slots[key] = slot
            if old is None:
                self._link(key)
            else:
                lst = self._buckets[self._bucket_of[key]]
                if lst[0] != key:
                    lst.remove(key)
                    lst.insert(0, key)
                self._free.append(old)
        return 0

    def prog_delete(self, key: bytes) -> int:
        try:
            self._delete(bytes(key))
        except OSError as e:
            return -e.errno
        return 0

    def __len__(self) -> int:
        return len(self._slots)


class PerCpuHashMap(HashMap):
    map_type = MapType.PERCPU_HASH
    percpu = True


class LruHashMap(HashMap):
    map_type = MapType.LRU_HASH
    lru = True


class LruPerCpuHashMap(HashMap):
    map_type = MapType.LRU_PERCPU_HASH
    lru = True
    percpu = True


class HashOfMaps(HashMap):
    """hash_of_maps: values are inner maps (userland passes map fds and reads back map ids)."""

    map_type = MapType.HASH_OF_MAPS

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        if attr.value_size != 4:
            raise oserror(errno.EINVAL)
        super().alloc_check(attr)

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        from .array import inner_map_meta

        self.inner_meta = inner_map_meta(attr.inner_map_fd)
        super().__init__(kernel, attr)

    def _alloc_storage(self, kernel: Kernel, nslots: int) -> None:
        self._objs: dict[int, UnifiedMap] = {}

    def free_storage(self) -> None:
        with self.lock:
            objs = list(self._objs.values())
            self._objs.clear()
            self._slots.clear()
        for inner in objs:
            inner.put()

    def _read_user(self, slot: int) -> bytes:
        return self._objs[slot].id.to_bytes(4, "little")

    def _write_user(self, slot: int, value, new: bool) -> None:
        self._objs[slot] = value

    _write_prog = None  # programs cannot update map-in-map maps

    def _drop_slot(self, slot: int) -> None:
        inner = self._objs.pop(slot, None)
        if inner is not None:
            inner.put()
        self._free.append(slot)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        from .array import inner_map_from_fd

        inner = inner_map_from_fd(self.inner_meta, int.from_bytes(value[:4], "little", signed=True))
        try:
            self._update(key, inner, flags, 0, from_prog=False)
        except OSError:
            inner.put()
            raise

    def sys_lookup_and_delete(self, key: bytes | None, flags: int) -> bytes:
        raise oserror(ENOTSUPP)  # the syscall pops only from plain hash maps (the batch form works)

    def prog_lookup(self, key: bytes, cpu: int = 0) -> int:
        slot = self._slots.get(key)
        inner = self._objs.get(slot) if slot is not None else None
        return self.kernel.vm.handle_of(inner) if inner is not None else 0

    def prog_update(self, key: bytes, value: bytes, flags: int = 0, cpu: int = 0) -> int:
        return -errno.EINVAL

    def prog_elements(self, cpu: int = 0) -> list[tuple[bytes, int]] | None:
        return None

