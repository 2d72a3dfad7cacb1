"""Typed map wrappers (loader/maps.py) over raw bpf() maps, on every kernel that has map commands."""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_sim.uapi.bpf import BPF_EXIST, BPF_NOEXIST, BpfCmd, MapCreateAttr, MapType, make_attr
from loader.backends import open_kernel
from loader.errors import MapTypeError
from loader.maps import (
    Array,
    HashMap,
    LruHashMap,
    Map,
    MapData,
    PerCpuArray,
    PerCpuHashMap,
    ProgramArray,
    Queue,
    Stack,
    nr_possible_cpus,
    parse_cpu_list,
    typed_map,
)
from loader.perf_buffer import PerfEventArray
from loader.ringbuf_reader import RingBuf
from tests.conftest import linux_bpf_denied


def sim_has_maps() -> bool:
    """kernel_sim grows map commands while this suite is written; test it once it has them."""
    from kernel_sim.bpf import commands  # noqa: F401
    from kernel_sim.bpf.syscall import BPF_COMMANDS

    return int(BpfCmd.MAP_CREATE) in BPF_COMMANDS


KERNELS = ["linux"] + (["sim"] if sim_has_maps() else [])


@pytest.fixture(params=KERNELS)
def sys(request):
    if request.param == "linux":
        reason = linux_bpf_denied()
        if reason:
            pytest.skip(reason)
    k = open_kernel(request.param)
    yield k
    k.close_all()


def create(sys, map_type, key_size, value_size, max_entries, name="m", flags=0) -> MapData:
    attr = make_attr(MapCreateAttr, map_type=map_type, key_size=key_size, value_size=value_size,
                     max_entries=max_entries, map_flags=flags, map_name=name.encode())
    fd = sys.bpf(BpfCmd.MAP_CREATE, attr)
    return MapData(sys, fd, name, map_type, key_size, value_size, max_entries, flags)


def test_parse_cpu_list():
    assert parse_cpu_list("0-3,5,7-8\n") == [0, 1, 2, 3, 5, 7, 8]
    assert parse_cpu_list("0") == [0]
    assert parse_cpu_list("") == []


def test_hash_map_is_dict_like(sys):
    with HashMap(create(sys, MapType.HASH, 4, 8, 16)) as h:
        h[1] = 10
        h[2] = 20
        assert h[1] == 10 and h.get(2) == 20 and h.get(3) is None and h.get(3, -1) == -1
        assert sorted(h.items()) == [(1, 10), (2, 20)]
        assert sorted(h.keys()) == [1, 2] and sorted(h.values()) == [10, 20]
        assert len(h) == 2 and 2 in h and 3 not in h
        del h[1]
        with pytest.raises(KeyError):
            h[1]
        with pytest.raises(KeyError):
            del h[1]
        h.insert(2, 21, BPF_EXIST)
        assert h[2] == 21
        with pytest.raises(OSError) as e:
            h.insert(2, 22, BPF_NOEXIST)
        assert e.value.errno == errno.EEXIST
        with pytest.raises(OSError) as e:
            h.insert(9, 1, BPF_EXIST)
        assert e.value.errno == errno.ENOENT


def test_hash_map_full_is_e2big(sys):
    h = HashMap(create(sys, MapType.HASH, 4, 4, 2))
    h[1] = 1
    h[2] = 2
    with pytest.raises(OSError) as e:
        h[3] = 3
    assert e.value.errno == errno.E2BIG
    h.close()


def test_struct_and_ctypes_codecs(sys):
    class Val(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint32), ("comm", ctypes.c_char * 12)]

    data = create(sys, MapType.HASH, 8, 16, 4)
    h = HashMap(data, key="<II", value=Val)
    h[(1, 2)] = Val(7, b"bash")
    got = h[(1, 2)]
    assert (got.pid, got.comm) == (7, b"bash")
    assert list(h.keys()) == [(1, 2)]
    raw = Map(data)  # the generic map speaks bytes
    assert raw[struct.pack("<II", 1, 2)][:8] == struct.pack("<I", 7) + b"bash"
    with pytest.raises(ValueError):
        HashMap(data, key="<I")  # 4 bytes for an 8-byte key
    data.close()


def test_array_indexes(sys):
    a = Array(create(sys, MapType.ARRAY, 4, 8, 4))
    a[2] = 7
    assert list(a.items()) == [(0, 0), (1, 0), (2, 7), (3, 0)]
    assert len(a) == 4 and list(a.keys()) == [0, 1, 2, 3]
    with pytest.raises(IndexError):
        a[4]
    with pytest.raises(OSError) as e:
        del a[1]
    assert e.value.errno == errno.EINVAL
    a.close()


def test_per_cpu_values_one_per_possible_cpu(sys):
    n = nr_possible_cpus(sys)
    p = PerCpuArray(create(sys, MapType.PERCPU_ARRAY, 4, 4, 2))
    p[0] = 5
    assert p[0] == [5] * n
    p[1] = list(range(n))
    assert p[1] == list(range(n))
    ph = PerCpuHashMap(create(sys, MapType.PERCPU_HASH, 4, 12, 4), value="<III")
    ph[3] = [(i, i + 1, i + 2) for i in range(n)]
    assert ph[3] == [(i, i + 1, i + 2) for i in range(n)]
    with pytest.raises(ValueError):
        ph[4] = [(0, 0, 0)] * (n + 1)
    p.close()
    ph.close()


def test_queue_and_stack(sys):
    q = Queue(create(sys, MapType.QUEUE, 0, 4, 3))
    s = Stack(create(sys, MapType.STACK, 0, 4, 3))
    for v in (1, 2, 3):
        q.push(v)
        s.push(v)
    with pytest.raises(OSError) as e:
        q.push(4)
    assert e.value.errno == errno.E2BIG
    q.push(4, BPF_EXIST)  # overwrite the oldest
    assert q.peek() == 2 and s.peek() == 3
    assert [q.pop(), q.pop(), q.pop()] == [2, 3, 4]
    assert [s.pop(), s.pop(), s.pop()] == [3, 2, 1]
    with pytest.raises(KeyError):
        q.pop()
    with pytest.raises(KeyError):
        s.peek()
    q.close()
    s.close()


def test_wrong_type_is_refused(sys):
    data = create(sys, MapType.ARRAY, 4, 4, 1)
    with pytest.raises(MapTypeError):
        HashMap(data)
    with pytest.raises(MapTypeError):
        RingBuf(data)
    data.close()


def test_typed_map_by_type(sys):
    cases = [
        (MapType.HASH, 4, 4, 4, HashMap), (MapType.LRU_HASH, 4, 4, 4, LruHashMap),
        (MapType.ARRAY, 4, 4, 4, Array), (MapType.PERCPU_ARRAY, 4, 4, 4, PerCpuArray),
        (MapType.QUEUE, 0, 4, 4, Queue), (MapType.PROG_ARRAY, 4, 4, 4, ProgramArray),
        (MapType.PERF_EVENT_ARRAY, 4, 4, 4, PerfEventArray), (MapType.RINGBUF, 0, 0, 4096, RingBuf),
    ]
    for map_type, k, v, n, cls in cases:
        m = typed_map(create(sys, map_type, k, v, n))
        assert type(m) is cls
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (map_type, k, v, n)
        again = MapData.from_fd(sys, m.fd)
        assert (again.map_type, again.key_size, again.value_size, again.max_entries) == (map_type, k, v, n)
        m.close()
        assert m.fd == -1


OPS = st.lists(st.tuples(st.sampled_from(["set", "del", "get", "noexist", "exist"]), st.integers(0, 7),
                         st.integers(0, 2**64 - 1)), max_size=40)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_hash_map_behaves_like_a_bounded_dict(sys, ops):
    """Every outcome (value, KeyError, EEXIST/ENOENT/E2BIG) matches a dict with Linux's rules."""
    h = HashMap(create(sys, MapType.HASH, 4, 8, 4))
    model: dict[int, int] = {}
    try:
        for op, key, value in ops:
            if op == "get":
                assert h.get(key) == model.get(key)
            elif op == "del":
                if key in model:
                    del h[key]
                    del model[key]
                else:
                    with pytest.raises(KeyError):
                        del h[key]
            else:
                flags = {"set": 0, "noexist": BPF_NOEXIST, "exist": BPF_EXIST}[op]
                expect = None
                if op == "noexist" and key in model:
                    expect = errno.EEXIST
                elif op == "exist" and key not in model:
                    expect = errno.ENOENT
                elif key not in model and len(model) >= 4:
                    expect = errno.E2BIG
                if expect is None:
                    h.insert(key, value, flags)
                    model[key] = value
                else:
                    with pytest.raises(OSError) as e:
                        h.insert(key, value, flags)
                    assert e.value.errno == expect
        assert dict(h.items()) == model
    finally:
        h.close()


class CountingSys:
    """Counts bpf() commands going through to the wrapped kernel."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.cmds: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def bpf(self, cmd, attr):
        self.cmds.append(int(cmd))
        return self.inner.bpf(cmd, attr)


@pytest.mark.parametrize("map_type, value_size", [(MapType.HASH, 8), (MapType.PERCPU_HASH, 12),
                                                  (MapType.ARRAY, 8), (MapType.LRU_HASH, 8)])
def test_items_in_batches_match_key_by_key(sys, map_type, value_size):
    counting = CountingSys(sys)
    n = 700
    data = create(counting, map_type, 4, value_size, n)
    m = typed_map(data)
    ncpu = nr_possible_cpus(sys)
    for k in range(n):
        v = k * 3 if value_size == 8 else (k * 3).to_bytes(value_size, "little")
        m[k] = [v] * ncpu if map_type == MapType.PERCPU_HASH else v
    counting.cmds.clear()
    batched = dict(m.items())
    used = list(counting.cmds)
    assert dict(m._items_by_key()) == batched
    assert len(batched) == n or map_type == MapType.LRU_HASH  # LRU evicts before it is full, on both kernels
    assert used.count(BpfCmd.MAP_LOOKUP_BATCH) <= n // 256 + 2  # a few calls, not 2 per key
    assert BpfCmd.MAP_GET_NEXT_KEY not in used
    m.close()


def test_batch_refused_falls_back_to_keys(sys):
    class NoBatch(CountingSys):
        def bpf(self, cmd, attr):
            if cmd == BpfCmd.MAP_LOOKUP_BATCH:
                raise OSError(errno.EINVAL, "no batch ops")
            return super().bpf(cmd, attr)

    h = HashMap(create(NoBatch(sys), MapType.HASH, 4, 8, 8))
    h[1], h[2] = 10, 20
    assert sorted(h.items()) == [(1, 10), (2, 20)]
    h.close()
