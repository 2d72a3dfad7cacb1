"""The loader's own syscalls enter the simulated kernel like any task's: syscall tracepoints and
kprobes on the entry points and kernel functions see them (bpf, perf_event_open, ioctl, read,
write, close), and their results and errnos are unchanged by the trip."""

from __future__ import annotations

import ctypes
import errno

import pytest

from kernel_sim.syscall_table import ENTRY_PREFIX
from kernel_sim.uapi.bpf import BpfCmd, MapCreateAttr, MapElemAttr, MapType, make_attr
from kernel_sim.uapi.perf import PerfEventAttr, PerfSwId, PerfType
from loader.backends import open_kernel


@pytest.fixture(params=["x86_64", "riscv64", "loongarch64"])
def sim(request):
    sys = open_kernel("sim", arch=request.param)
    yield sys
    sys.close_all()


def _hits(sys, symbol: str) -> list:
    hits: list = []
    sys.kernel.kprobes.register_kprobe(symbol, 0, pre_handler=lambda kp, frame: hits.append(kp))
    return hits


def test_bpf_from_the_seam_runs_the_syscall_entry(sim):
    hits = _hits(sim, ENTRY_PREFIX[sim.kernel.arch] + "bpf")
    fd = sim.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=MapType.HASH, key_size=4, value_size=8,
                                              max_entries=4))
    key, value = ctypes.c_uint32(7), ctypes.c_uint64()
    with pytest.raises(OSError) as e:  # the errno survives the trip through the entry
        sim.bpf(BpfCmd.MAP_LOOKUP_ELEM, make_attr(MapElemAttr, map_fd=fd, key=ctypes.addressof(key),
                                                  value=ctypes.addressof(value)))
    assert e.value.errno == errno.ENOENT
    assert len(hits) == 2


def test_attr_write_back_reaches_the_caller(sim):
    """perf_event_open's E2BIG writes the kernel's attr size back into the caller's buffer."""
    hits = _hits(sim, ENTRY_PREFIX[sim.kernel.arch] + "perf_event_open")
    attr = bytearray(bytes(PerfEventAttr(type=PerfType.SOFTWARE, config=PerfSwId.BPF_OUTPUT)))
    attr[4:8] = (4096 + 8).to_bytes(4, "little")
    with pytest.raises(OSError) as e:
        sim.perf_event_open(attr, -1, 0, -1, 0)
    assert e.value.errno == errno.E2BIG
    assert int.from_bytes(attr[4:8], "little") == ctypes.sizeof(PerfEventAttr)
    assert hits


def test_read_write_close_hit_vfs_functions(sim):
    reads, writes = _hits(sim, "vfs_read"), _hits(sim, "vfs_write")
    fd = sim.eventfd(0, 0)
    assert sim.write(fd, (5).to_bytes(8, "little")) == 8
    assert int.from_bytes(sim.read(fd, 8), "little") == 5
    sim.close(fd)
    with pytest.raises(OSError) as e:
        sim.close(fd)
    assert e.value.errno == errno.EBADF
    assert (len(reads), len(writes)) == (1, 1)
