"""What a kprobe costs in kernel_sim: a kernel function call (Kernel.kcall) per configuration.

    python bench/kprobe.py [--arch x86_64|riscv64|loongarch64|all] [--calls N]

Configurations, each on a fresh kernel:
  no probe          the fast path: one set lookup, then the Python body
  probe, stub       a kprobe with a no-op pre-handler: the function's machine code runs on the
                    simulated CPU (break, pre-handler, out-of-line step, second trap, body, epilogue)
  kretprobe, stub   entry probe + trampoline break + return handler
  probe, empty BPF  a KPROBE program "r0 = 0; exit" attached with perf_event_open + SET_BPF
  probe, perf out   a program that sends 16 bytes with bpf_perf_event_output(BPF_F_CURRENT_CPU)
                    into a mmapped BPF output buffer (drained as it fills)
Figures are CPU microseconds per call of this thread (best of 3 runs; thread CPU time, so other
load on the machine does not inflate them) and calls per second.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel_sim.uapi.bpf import BpfCmd, MapCreateAttr, MapElemAttr, MapType, ProgLoadAttr, ProgType, make_attr  # noqa: E402
from kernel_sim.uapi.bpf_enums import HelperId  # noqa: E402
from kernel_sim.uapi.insn import (  # noqa: E402
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_JMP,
    BPF_K,
    BPF_MEM,
    BPF_MOV,
    BPF_PSEUDO_MAP_FD,
    BPF_ST,
    BPF_X,
    encode,
    insn,
    ld_imm64,
)
from kernel_sim.uapi.perf import (  # noqa: E402
    DATA_HEAD_OFFSET,
    DATA_TAIL_OFFSET,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PERF_SAMPLE_RAW,
    PerfEventAttr,
    PerfSwId,
    PerfType,
)
from loader.backends import open_kernel  # noqa: E402

KEEP: list = []


def _ptr(data: bytes) -> int:
    buf = ctypes.create_string_buffer(data, len(data))
    KEEP.append(buf)
    return ctypes.addressof(buf)


def _load(sys, prog: bytes) -> int:
    attr = make_attr(ProgLoadAttr, prog_type=ProgType.KPROBE, insn_cnt=len(prog) // 8, insns=_ptr(prog),
                     license=_ptr(b"GPL\0"))
    return sys.bpf(BpfCmd.PROG_LOAD, attr)


def _attach(sys, prog_fd: int, symbol: bytes) -> None:
    attr = PerfEventAttr(type=6, size=ctypes.sizeof(PerfEventAttr), config1=_ptr(symbol + b"\0"))
    fd = sys.perf_event_open(bytearray(bytes(attr)), -1, 0, -1, 0)
    sys.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
    sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)


def _output_ring(sys):
    map_fd = sys.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=MapType.PERF_EVENT_ARRAY, key_size=4,
                                                  value_size=4, max_entries=sys.kernel.ncpus))
    attr = PerfEventAttr(type=PerfType.SOFTWARE, size=ctypes.sizeof(PerfEventAttr), config=PerfSwId.BPF_OUTPUT,
                         sample_type=PERF_SAMPLE_RAW, sample_period=1, wakeup_events=1)
    fd = sys.perf_event_open(bytearray(bytes(attr)), -1, 0, -1, 0)
    ring = sys.mmap(fd, 65 * 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, 0)
    sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    sys.bpf(BpfCmd.MAP_UPDATE_ELEM, make_attr(MapElemAttr, map_fd=map_fd, key=_ptr(struct.pack("<I", 0)),
                                              value=_ptr(struct.pack("<I", fd))))
    return map_fd, ring


def _setup(arch: str, config: str):
    sys = open_kernel("sim", arch=arch)
    kernel = sys.kernel
    drain = None
    if config == "probe, stub":
        kernel.kprobes.register_kprobe("vfs_write", 0, pre_handler=lambda kp, frame: None)
    elif config == "kretprobe, stub":
        kernel.kprobes.register_kretprobe("vfs_write", handler=lambda ri, frame: None)
    elif config == "probe, empty BPF":
        _attach(sys, _load(sys, encode([insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=0), insn(BPF_JMP | BPF_EXIT)])),
                b"vfs_write")
    elif config == "probe, perf out":
        map_fd, ring = _output_ring(sys)
        prog = encode([
            insn(BPF_ST | BPF_MEM | BPF_DW, 10, off=-16, imm=1), insn(BPF_ST | BPF_MEM | BPF_DW, 10, off=-8, imm=2),
            *ld_imm64(2, map_fd, BPF_PSEUDO_MAP_FD), insn(BPF_ALU | BPF_MOV | BPF_K, 3, imm=0xFFFFFFFF),
            insn(BPF_ALU64 | BPF_MOV | BPF_X, 4, 10), insn(BPF_ALU64 | BPF_ADD | BPF_K, 4, imm=-16),
            insn(BPF_ALU64 | BPF_MOV | BPF_K, 5, imm=16), insn(BPF_JMP | BPF_CALL, imm=int(HelperId.perf_event_output)),
            insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=0), insn(BPF_JMP | BPF_EXIT)])
        _attach(sys, _load(sys, prog), b"vfs_write")

        def drain() -> None:
            struct.pack_into("<Q", ring, DATA_TAIL_OFFSET, struct.unpack_from("<Q", ring, DATA_HEAD_OFFSET)[0])
    return kernel, drain


def measure(arch: str, config: str, calls: int) -> float:
    kernel, drain = _setup(arch, config)
    kcall = kernel.kcall
    args = (3, 0x1000, 16, 0)

    def body(*_):
        return 16

    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        for i in range(calls):
            kcall("vfs_write", args, body)
            if drain is not None and i % 1000 == 999:
                drain()
        best = min(best, (time.thread_time() - start) / calls)
    kernel.shutdown()
    return best * 1e6


CONFIGS = ["no probe", "probe, stub", "kretprobe, stub", "probe, empty BPF", "probe, perf out"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="x86_64", choices=["x86_64", "riscv64", "loongarch64", "all"])
    ap.add_argument("--calls", type=int, default=5000)
    opts = ap.parse_args()
    arches = ["x86_64", "riscv64", "loongarch64"] if opts.arch == "all" else [opts.arch]
    print(f"{'arch':<12} {'configuration':<18} {'us/call':>9} {'calls/s':>10}")
    for arch in arches:
        for config in CONFIGS:
            calls = opts.calls * (20 if config == "no probe" else 1)
            try:
                us = measure(arch, config, calls)
            except OSError as e:
                print(f"{arch:<12} {config:<18} {'n/a':>9} ({e})")
                continue
            print(f"{arch:<12} {config:<18} {us:>9.2f} {1e6 / us:>10.0f}")


if __name__ == "__main__":
    main()
