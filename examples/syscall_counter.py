#!/usr/bin/env python3
"""The write-up's Aya application, in Python with bpfload's Aya-shaped API.

Loads examples/syscall_counter.bpf.o, attaches its kprobe to the kernel's syscall dispatcher,
prints every aya-log record the program sends ("syscall N called, M times", with its level),
and every INTERVAL seconds prints the table of syscall counts from the SYSCALL_COUNTS hash
map, most frequent first, as the original application does. Runs on kernel_sim (default)
with one of its built-in workloads generating the syscalls:

    python examples/syscall_counter.py --duration 12 --interval 5
    python examples/syscall_counter.py --arch riscv64 --workload storm --quiet
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from kernel_sim.syscall_table import syscalls_of  # noqa: E402
from kernel_sim.uapi.epoll import EPOLL_CTL_ADD, EPOLLIN  # noqa: E402
from loader.aya_log import EbpfLogger  # noqa: E402
from loader.backends import open_kernel  # noqa: E402
from loader.ebpf import Ebpf  # noqa: E402

# kernel_sim's syscall dispatcher per arch: the function the kprobe sits on.
DISPATCHER = {"x86_64": "x64_sys_call", "riscv64": "do_syscall", "loongarch64": "do_syscall"}


def count_table(counts: dict[int, int], names: dict[int, str]) -> str:
    lines = [f"{'SYSCALL':<16}{'NR':>5}{'COUNT':>10}"]
    for nr, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{names.get(nr, '?'):<16}{nr:>5}{n:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="x86_64", choices=sorted(DISPATCHER))
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--workload", default="shell", help="kernel_sim workload (idle, shell, storm)")
    ap.add_argument("--duration", type=float, default=11.0, help="seconds to run")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between count tables")
    ap.add_argument("--quiet", action="store_true", help="do not print each log record")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.DEBUG, format="[%(levelname)s] %(message)s")
    kernel = open_kernel("sim", arch=args.arch, cpus=args.cpus)
    names = {nr: name for name, nr in syscalls_of(args.arch).items()}
    with Ebpf.load_file(HERE / "syscall_counter.bpf.o", kernel=kernel) as ebpf:
        prog = ebpf.program("syscall_counter")
        prog.load()
        logger = EbpfLogger(ebpf)
        prog.attach(DISPATCHER[args.arch])
        counts_map = ebpf.map("SYSCALL_COUNTS")
        # Sleep in epoll until a perf buffer has records or the next table is due (no polling).
        epfd = kernel.epoll_create1(0)
        for buf in logger.buffers:
            kernel.epoll_ctl(epfd, EPOLL_CTL_ADD, buf.fd, EPOLLIN)
        kernel.start_workload(args.workload)
        try:
            start = time.monotonic()
            next_table = start + args.interval
            while (now := time.monotonic()) - start < args.duration:
                wait = min(next_table, start + args.duration) - now
                if kernel.epoll_wait(epfd, len(logger.buffers), max(0, int(wait * 1000))):
                    logger.read()
                if time.monotonic() >= next_table:
                    next_table += args.interval
                    counts = {int.from_bytes(k, "little") if isinstance(k, bytes) else k: v
                              for k, v in counts_map.items()}
                    print(count_table(counts, names), flush=True)
        finally:
            kernel.stop_workload()
            kernel.close(epfd)
        logger.read()
        logger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
