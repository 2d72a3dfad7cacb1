"""Arbitrary attrs for every map command on the simulated kernel: an int or an OSError, nothing else.

Attrs are random bytes with the map fd, the pointers and the sizes drawn from values that hit
real maps of every type, NULL, unmapped addresses and real buffers that are too small, so the
handlers' checks (and the map types behind them) see hostile input. Linux never panics here
and kernel_sim must not raise anything but OSError.
"""

from __future__ import annotations

import ctypes
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_maps_util import MapUser

from kernel_sim.kernel import Kernel
from kernel_sim.uapi.bpf import BPF_F_MMAPABLE, BpfCmd
from kernel_sim.uapi.bpf import MapType as T

CMDS = [BpfCmd.MAP_CREATE, BpfCmd.MAP_LOOKUP_ELEM, BpfCmd.MAP_UPDATE_ELEM, BpfCmd.MAP_DELETE_ELEM,
        BpfCmd.MAP_GET_NEXT_KEY, BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM, BpfCmd.MAP_LOOKUP_BATCH,
        BpfCmd.MAP_LOOKUP_AND_DELETE_BATCH, BpfCmd.MAP_UPDATE_BATCH, BpfCmd.MAP_DELETE_BATCH, BpfCmd.MAP_FREEZE,
        BpfCmd.OBJ_PIN, BpfCmd.OBJ_GET, BpfCmd.OBJ_GET_INFO_BY_FD, BpfCmd.MAP_GET_FD_BY_ID]


@pytest.fixture(scope="module")
def world():
    kernel = Kernel(cpus=2)
    sys = kernel.syscalls()
    u = MapUser(sys)
    inner = u.create(T.ARRAY, 4, 8, 4)
    fds = [u.create(*args) for args in (
        (T.HASH, 4, 8, 8), (T.ARRAY, 4, 8, 4), (T.PERCPU_HASH, 8, 4, 4), (T.PERCPU_ARRAY, 4, 12, 2),
        (T.LRU_HASH, 4, 8, 3), (T.LRU_PERCPU_HASH, 2, 8, 3), (T.QUEUE, 0, 8, 3), (T.STACK, 0, 8, 3),
        (T.RINGBUF, 0, 0, 4096), (T.PERF_EVENT_ARRAY, 4, 4, 2), (T.PROG_ARRAY, 4, 4, 2),
        (T.ARRAY, 4, 8, 2, BPF_F_MMAPABLE), (T.STACK_TRACE, 4, 16, 4), (T.BLOOM_FILTER, 0, 4, 8),
        (T.LPM_TRIE, 8, 4, 4, 1),
    )]
    fds.append(u.create(T.ARRAY_OF_MAPS, 4, 4, 2, inner_map_fd=inner))
    fds.append(u.create(T.HASH_OF_MAPS, 4, 4, 2, inner_map_fd=inner))
    # One big buffer: every pointer the fuzzer passes is NULL, unmapped, or inside it with room for
    # whatever a map can copy out (a 1 MiB value, batches of small ones), so no write lands outside.
    buf = ctypes.create_string_buffer(16 << 20)
    addr = ctypes.addressof(buf)
    buf[8 << 20:(8 << 20) + 17] = b"/sys/fs/bpf/fuzz\0"
    yield dict(sys=sys, fds=[inner, *fds], ptrs=[0, 8, 0xDEAD0000, addr, addr + (4 << 20), addr + (8 << 20)],
               keep=(buf,))
    sys.close_all()


def _attr(draw, world) -> bytearray:
    words = draw(st.lists(st.one_of(
        st.sampled_from(world["fds"]), st.sampled_from(world["ptrs"]), st.integers(0, 2**64 - 1),
        st.sampled_from([0, 1, 2, 3, 4, 8, 1 << 10, 1 << 12, 1 << 31, 2**32 - 1])), min_size=0, max_size=21))
    raw = bytearray()
    for w in words:
        raw += struct.pack("<Q", w & (2**64 - 1)) if w > 2**32 - 1 or draw(st.booleans()) else struct.pack("<II", w, 0)
    return raw[:draw(st.integers(0, 200))] if raw else bytearray(draw(st.integers(0, 16)))


@st.composite
def calls(draw, world):
    return draw(st.sampled_from(CMDS)), _attr(draw, world)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_only_oserror(world, data):
    cmd, attr = data.draw(calls(world))
    try:
        ret = world["sys"].bpf(cmd, attr if attr else bytearray(1))
    except OSError:
        return
    assert isinstance(ret, int)
    if cmd in (BpfCmd.MAP_CREATE, BpfCmd.OBJ_GET, BpfCmd.MAP_GET_FD_BY_ID) and ret >= 3:
        world["sys"].close(ret)
    if cmd == BpfCmd.OBJ_PIN:
        world["sys"].unlink("/sys/fs/bpf/fuzz")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(map_type=st.integers(0, 34), key_size=st.sampled_from([0, 1, 3, 4, 8, 513, 2**32 - 1]),
       value_size=st.sampled_from([0, 1, 4, 8, 4096, 1 << 20, 2**31, 2**32 - 1]),  # 1 MiB at most succeeds
       max_entries=st.sampled_from([0, 1, 3, 4096, 1 << 20, 2**31, 2**32 - 1]),
       flags=st.integers(0, (1 << 19) - 1), inner=st.booleans(),
       ops=st.lists(st.tuples(st.sampled_from([BpfCmd.MAP_LOOKUP_ELEM, BpfCmd.MAP_UPDATE_ELEM, BpfCmd.MAP_DELETE_ELEM,
                                               BpfCmd.MAP_GET_NEXT_KEY, BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM,
                                               BpfCmd.MAP_LOOKUP_BATCH, BpfCmd.MAP_UPDATE_BATCH,
                                               BpfCmd.MAP_LOOKUP_AND_DELETE_BATCH, BpfCmd.MAP_DELETE_BATCH,
                                               BpfCmd.MAP_FREEZE]),
                              st.integers(0, 7), st.integers(0, 2**32 - 1)), max_size=8))
def test_created_maps_take_any_operation(world, map_type, key_size, value_size, max_entries, flags, inner, ops):
    sys = world["sys"]
    u = MapUser(sys)
    try:
        fd = u.create(map_type, key_size, value_size, max_entries, flags,
                      inner_map_fd=world["fds"][0] if inner else 0)
    except OSError:
        return
    buf = world["keep"][0]
    addr = ctypes.addressof(buf)
    try:
        for cmd, flag, word in ops:
            buf[0:4] = struct.pack("<I", word)
            attr = bytearray(struct.pack("<IIQQQ", fd, 0, addr, addr + 4096, flag))
            if cmd in (BpfCmd.MAP_LOOKUP_BATCH, BpfCmd.MAP_UPDATE_BATCH, BpfCmd.MAP_LOOKUP_AND_DELETE_BATCH,
                       BpfCmd.MAP_DELETE_BATCH):
                attr = bytearray(struct.pack("<QQQQIIQQ", 0, addr + 512, addr, addr + 4096, word % 5, fd, flag & 4, 0))
            elif cmd == BpfCmd.MAP_FREEZE:
                attr = bytearray(struct.pack("<I", fd))
            try:
                assert isinstance(sys.bpf(cmd, attr), int)
            except OSError:
                pass
    finally:
        sys.close(fd)
