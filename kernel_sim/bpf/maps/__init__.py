"""BPF maps: the UnifiedMap family, one class per map type, looked up by MAP_CREATE.

Types: hash, percpu_hash, lru_hash, lru_percpu_hash, hash_of_maps (hash.py; LRU in lru.py),
array, percpu_array, perf_event_array, prog_array, array_of_maps, cgroup_array (array.py), queue, stack
(queue.py), ringbuf (ringbuf.py), stack_trace, bloom_filter (special.py), lpm_trie (lpm.py).
Per-CPU storage is PerCpuVariants (base.py); BTF special fields (bpf_spin_lock) btf_fields.py.

Syscall side (bpf() commands in kernel_sim/bpf/map_cmds.py): ``sys_lookup / sys_update /
sys_delete / sys_get_next_key / sys_lookup_and_delete`` take user-visible bytes and raise
OSError. Program side (the VM's helpers): ``prog_lookup(key, cpu) -> addr | 0``,
``prog_update(key, value, flags, cpu)``, ``prog_delete(key)`` (0 / -errno);
queue/stack ``prog_push / prog_pop / prog_peek``; bloom filter ``prog_push`` and
``prog_peek_value(value)``; perf_event_array ``perf_event_output``; prog_array ``prog_at``;
stack_trace ``prog_store_stack(ips, flags)``; ringbuf ``ringbuf`` / ``ringbuf_base`` /
``ringbuf_reserve / _submit / _discard / _output / _query``; ``direct_value_size /
direct_value_addr`` for BPF_PSEUDO_MAP_VALUE; ``prog_elements(cpu)`` for bpf_for_each_map_elem.
"""

from __future__ import annotations

from ...uapi.bpf import MapType
from .array import ArrayMap, ArrayOfMaps, CgroupArray, PerCpuArrayMap, PerfEventArray, ProgArray
from .base import ENOTSUPP, BpfMapFile, PerCpuVariants, UnifiedMap
from .hash import HashMap, HashOfMaps, LruHashMap, LruPerCpuHashMap, PerCpuHashMap
from .lpm import LpmTrieMap
from .queue import QueueMap, StackMap
from .ringbuf import RingBufMap
from .special import BloomFilterMap, StackTraceMap

MAP_TYPES: dict[int, type[UnifiedMap]] = {
    cls.map_type: cls
    for cls in (HashMap, ArrayMap, PerCpuHashMap, PerCpuArrayMap, LruHashMap, LruPerCpuHashMap, PerfEventArray,
                RingBufMap, QueueMap, StackMap, ProgArray, ArrayOfMaps, HashOfMaps, StackTraceMap, BloomFilterMap, LpmTrieMap, CgroupArray)
}

__all__ = [
    "ENOTSUPP", "MAP_TYPES", "ArrayMap", "ArrayOfMaps", "BloomFilterMap", "BpfMapFile", "CgroupArray", "HashMap", "HashOfMaps", "LpmTrieMap", "LruHashMap",
    "LruPerCpuHashMap", "MapType", "PerCpuArrayMap", "PerCpuHashMap", "PerCpuVariants", "PerfEventArray",
    "ProgArray", "QueueMap", "RingBufMap", "StackMap", "StackTraceMap", "UnifiedMap",
]
