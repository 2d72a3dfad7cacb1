"""stack_trace and bloom_filter maps.

stack_trace (bpf_get_stackid): stacks of u64 instruction pointers stored in buckets indexed by
``jhash2(ips) & (n_buckets - 1)``; the bucket index is the stack id. Userland looks stacks up by
id (missing -> ENOENT), walks ids with get_next_key and deletes them; it cannot update.

bloom_filter: a bit array sized as Linux sizes it (max_entries * hashes * 7 / 5, rounded to a
power of two) with Linux's jhash-based bit positions, so membership answers (false positives
included) match Linux's when BPF_F_ZERO_SEED fixes the seed. push adds, peek tests.
"""

from __future__ import annotations

import errno
import random
import struct
from typing import TYPE_CHECKING

from ...fs.file import File, oserror
from ...uapi.bpf import (
    BPF_ANY,
    BPF_F_FAST_STACK_CMP,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_REUSE_STACKID,
    BPF_F_SKIP_FIELD_MASK,
    BPF_F_STACK_BUILD_ID,
    BPF_F_USER_STACK,
    BPF_F_WRONLY,
    BPF_F_ZERO_SEED,
    MapCreateAttr,
    MapType,
)
from .base import ACCESS_MASK, ENOTSUPP, UnifiedMap, alloc_buffer, flags_access_ok, u32
from .hash import roundup_pow_of_two
from .jhash import jhash, jhash2

if TYPE_CHECKING:
    from ...kernel import Kernel

PERF_EVENT_MAX_STACK = 127  # sysctl kernel.perf_event_max_stack
BUILD_ID_ENTRY = 32  # sizeof(struct bpf_stack_build_id)
STACK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_STACK_BUILD_ID


class StackTraceMap(UnifiedMap):
    map_type = MapType.STACK_TRACE

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        vs = attr.value_size
        if attr.map_flags & ~STACK_CREATE_FLAG_MASK:
            raise oserror(errno.EINVAL)
        if attr.max_entries == 0 or attr.key_size != 4 or vs < 8 or vs % 8:
            raise oserror(errno.EINVAL)
        if attr.map_flags & BPF_F_STACK_BUILD_ID:
            if vs % BUILD_ID_ENTRY or vs // BUILD_ID_ENTRY > PERF_EVENT_MAX_STACK:
                raise oserror(errno.EINVAL)
        elif vs // 8 > PERF_EVENT_MAX_STACK:
            raise oserror(errno.EINVAL)
        if attr.max_entries > 1 << 31:
            raise oserror(errno.E2BIG)

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        super().__init__(kernel, attr)
        self.n_buckets = roundup_pow_of_two(self.max_entries)
        self.buckets: dict[int, tuple[int, tuple[int, ...]]] = {}  # id -> (hash, ips)

    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        entry = self.buckets.get(u32(key))
        if entry is None:
            raise oserror(errno.ENOENT)
        data = struct.pack(f"<{len(entry[1])}Q", *entry[1])
        return data.ljust(self.value_size, b"\0")

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        raise oserror(errno.EINVAL)

    def sys_delete(self, key: bytes | None) -> None:
        sid = u32(key)
        if sid >= self.n_buckets:
            raise oserror(errno.E2BIG)
        with self.lock:
            if self.buckets.pop(sid, None) is None:
                raise oserror(errno.ENOENT)

    def sys_lookup_and_delete(self, key: bytes | None, flags: int) -> bytes:
        with self.lock:
            value = self.sys_lookup(key, flags)
            del self.buckets[u32(key)]
            return value

    def sys_get_next_key(self, key: bytes | None) -> bytes:
        with self.lock:
            if key is None:
                sid = 0
            else:
                sid = u32(key)
                sid = 0 if sid >= self.n_buckets or sid not in self.buckets else sid + 1
            later = [i for i in self.buckets if i >= sid]
            if not later:
                raise oserror(errno.ENOENT)
            return min(later).to_bytes(4, "little")

    def prog_store_stack(self, ips: list[int], flags: int) -> int:
        """bpf_get_stackid: the stack's id, or -errno (EFAULT empty, EEXIST id taken)."""
        if flags & ~(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP | BPF_F_REUSE_STACKID):
            return -errno.EINVAL
        skip = flags & BPF_F_SKIP_FIELD_MASK
        trace = tuple(ip & 0xFFFFFFFFFFFFFFFF for ip in ips[skip:skip + self.value_size // 8])
        if not trace:
            return -errno.EFAULT
        h = jhash2(struct.pack(f"<{len(trace)}Q", *trace), 0)
        sid = h & (self.n_buckets - 1)
        with self.lock:
            old = self.buckets.get(sid)
            matches = old is not None and old[0] == h
            if matches and (flags & BPF_F_FAST_STACK_CMP or old[1] == trace):
                return sid
            if old is not None and not flags & BPF_F_REUSE_STACKID:
                return -errno.EEXIST
            self.buckets[sid] = (h, trace)
        return sid


BLOOM_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | ACCESS_MASK
U32_MAX = 0xFFFFFFFF


class BloomFilterMap(UnifiedMap):
    map_type = MapType.BLOOM_FILTER

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        if (attr.key_size != 0 or attr.value_size == 0 or attr.max_entries == 0
                or attr.map_flags & ~BLOOM_CREATE_FLAG_MASK or not flags_access_ok(attr.map_flags)
                or attr.map_extra & ~0xF):
            raise oserror(errno.EINVAL)

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        super().__init__(kernel, attr)
        self.nr_hash_funcs = (attr.map_extra & 0xF) or 5
        nr_bits = attr.max_entries * self.nr_hash_funcs
        if nr_bits > U32_MAX or (nr_bits // 5) * 7 > U32_MAX or (nr_bits // 5) * 7 > 1 << 31:
            self.mask = U32_MAX
        else:
            nr_bits = (nr_bits // 5) * 7
            nr_bits = 64 if nr_bits <= 64 else roundup_pow_of_two(nr_bits)
            self.mask = nr_bits - 1
        nbytes = (self.mask + 1 + 7) // 8
        self.bits = alloc_buffer(nbytes)
        self.seed = 0 if attr.map_flags & BPF_F_ZERO_SEED else random.getrandbits(32)
        self.aligned = self.value_size % 4 == 0

    def _positions(self, value: bytes):
        for i in range(self.nr_hash_funcs):
            seed = (self.seed + i) & U32_MAX
            h = jhash2(value, seed) if self.aligned else jhash(value, seed)
            yield h & self.mask

    def push(self, value: bytes, flags: int) -> None:
        if flags != BPF_ANY:
            raise oserror(errno.EINVAL)
        with self.lock:
            for bit in self._positions(bytes(value[:self.value_size])):
                self.bits[bit >> 3] |= 1 << (bit & 7)

    def peek(self, value: bytes) -> bool:
        return all(self.bits[bit >> 3] >> (bit & 7) & 1 for bit in self._positions(bytes(value[:self.value_size])))

    # syscall side: lookup is peek with the value as input; update is push
    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        raise oserror(ENOTSUPP)  # map_cmds calls sys_peek for bloom filters

    def sys_peek(self, value: bytes) -> None:
        if not self.peek(value):
            raise oserror(errno.ENOENT)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        self.push(value, flags)

    def sys_delete(self, key: bytes | None) -> None:
        raise oserror(errno.EOPNOTSUPP)

    def sys_get_next_key(self, key: bytes | None) -> bytes:
        raise oserror(errno.EOPNOTSUPP)

    # program side: bpf_map_push_elem / bpf_map_peek_elem
    def prog_push(self, value: bytes, flags: int = 0) -> int:
        try:
            self.push(bytes(value), flags)
        except OSError as e:
            return -e.errno
        return 0

    def prog_peek(self, value: bytes | None = None) -> bytes | int:
        """bpf_map_peek_elem: for a bloom filter the value is an input; without it, -EINVAL."""
        if value is None:
            return -errno.EINVAL
        return self.prog_peek_value(value)

    def prog_peek_value(self, value: bytes) -> int:
        """bpf_map_peek_elem on a bloom filter: 0 if the value may be present, else -ENOENT."""
        return 0 if self.peek(bytes(value)) else -errno.ENOENT
