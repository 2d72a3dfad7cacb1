"""Perf-event links on both kernels: LINK_DETACH is not a perf link operation, and the link
holds its perf event, so the program stays attached after the perf fd is closed."""

from __future__ import annotations

import ctypes
import errno

import pytest

from kernel_sim.uapi.bpf import (
    AttachType,
    BpfCmd,
    LinkCreateAttr,
    LinkDetachAttr,
    MapCreateAttr,
    MapElemAttr,
    MapType,
    ProgLoadAttr,
    ProgType,
    make_attr,
)
from kernel_sim.uapi.insn import encode, insn, ld_imm64
from kernel_sim.uapi.perf import PerfEventAttr, PerfType
from loader.kernel_info import read_file
from tests.conftest import TRACEFS, ensure_tracefs


def _tracepoint_id(sys, name: str) -> int:
    if sys.kind == "linux":
        ensure_tracefs()
    return int(read_file(sys, f"{TRACEFS}/events/{name}/id"))


def _counting_prog(sys, map_fd: int) -> int:
    """A tracepoint program that adds 1 to element 0 of an array map."""
    prog = [
        insn(0x62, 10, 0, -4, 0),            # *(u32 *)(r10 - 4) = 0
        *ld_imm64(1, map_fd, src=1),         # r1 = map
        insn(0xBF, 2, 10, 0, 0),             # r2 = r10
        insn(0x07, 2, 0, 0, -4),             # r2 += -4
        insn(0x85, 0, 0, 0, 1),              # call map_lookup_elem
        insn(0x15, 0, 0, 2, 0),              # if r0 == 0 goto +2
        insn(0xB7, 1, 0, 0, 1),              # r1 = 1
        insn(0xDB, 0, 1, 0, 0),              # lock *(u64 *)(r0 + 0) += r1
        insn(0xB7, 0, 0, 0, 0),              # r0 = 0
        insn(0x95, 0, 0, 0, 0),              # exit
    ]
    code = ctypes.create_string_buffer(encode(prog))
    lic = ctypes.create_string_buffer(b"GPL")
    return sys.bpf(BpfCmd.PROG_LOAD, make_attr(ProgLoadAttr, prog_type=ProgType.TRACEPOINT, insn_cnt=len(prog),
                                               insns=ctypes.addressof(code), license=ctypes.addressof(lic)))


def _count(sys, map_fd: int) -> int:
    key, value = ctypes.c_uint32(0), ctypes.c_uint64()
    sys.bpf(BpfCmd.MAP_LOOKUP_ELEM, make_attr(MapElemAttr, map_fd=map_fd, key=ctypes.addressof(key),
                                              value=ctypes.addressof(value)))
    return value.value


@pytest.fixture
def attached(bpf_kernel):
    sys = bpf_kernel
    map_fd = sys.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=MapType.ARRAY, key_size=4,
                                                  value_size=8, max_entries=1))
    prog_fd = _counting_prog(sys, map_fd)
    attr = PerfEventAttr(type=PerfType.TRACEPOINT, size=ctypes.sizeof(PerfEventAttr),
                         config=_tracepoint_id(sys, "syscalls/sys_enter_openat"))
    event_fd = sys.perf_event_open(bytearray(bytes(attr)), 0, -1, -1, 0)  # this task, any CPU
    link_fd = sys.bpf(BpfCmd.LINK_CREATE, make_attr(LinkCreateAttr, prog_fd=prog_fd, target_fd=event_fd,
                                                    attach_type=AttachType.PERF_EVENT))
    yield sys, map_fd, event_fd, link_fd


def test_link_detach_is_not_a_perf_link_operation(attached):
    sys, _, _, link_fd = attached
    with pytest.raises(OSError) as e:
        sys.bpf(BpfCmd.LINK_DETACH, make_attr(LinkDetachAttr, link_fd=link_fd))
    assert e.value.errno == errno.EOPNOTSUPP


def test_the_link_keeps_its_perf_event(attached):
    sys, map_fd, event_fd, link_fd = attached
    sys.close(event_fd)  # the link still holds the event: the program keeps running
    before = _count(sys, map_fd)
    for _ in range(3):
        sys.close(sys.openat("/proc/version", 0))
    assert _count(sys, map_fd) >= before + 3
    sys.close(link_fd)  # the last reference: detached
    after = _count(sys, map_fd)
    sys.close(sys.openat("/proc/version", 0))
    assert _count(sys, map_fd) == after
