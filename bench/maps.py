"""Map benchmark: lookups/s and updates/s for hash and array maps on the simulated kernel.

Two paths are measured: bpf() through the Syscalls seam (attr bytes, copy_from_user /
copy_to_user, the command's checks), which is what a loader pays, and the program-side API
the VM's helpers call (``prog_lookup`` / ``prog_update``), which is what a BPF program pays
per helper call. With ``--linux`` the same bpf() loop also runs on this machine's kernel for
scale.

    python bench/maps.py [--n 20000] [--entries 1024] [--linux]
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel_sim.uapi.bpf import BPF_ANY, BpfCmd, MapCreateAttr, MapElemAttr, MapType, make_attr  # noqa: E402
from loader.backends import open_kernel  # noqa: E402


def rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench_syscalls(sys_, map_type: int, n: int, entries: int) -> tuple[float, float]:
    fd = sys_.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=map_type, key_size=4, value_size=8,
                                               max_entries=entries))
    key, value = ctypes.c_uint32(0), ctypes.c_uint64(7)
    attr = make_attr(MapElemAttr, map_fd=fd, key=ctypes.addressof(key), value=ctypes.addressof(value), flags=BPF_ANY)
    bpf = sys_.bpf

    def updates():
        for i in range(n):
            key.value = i % entries
            bpf(BpfCmd.MAP_UPDATE_ELEM, attr)

    def lookups():
        for i in range(n):
            key.value = i % entries
            bpf(BpfCmd.MAP_LOOKUP_ELEM, attr)

    up = rate(n, updates)
    look = rate(n, lookups)
    sys_.close(fd)
    return look, up


def bench_program_side(sys_, map_type: int, n: int, entries: int) -> tuple[float, float]:
    fd = sys_.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=map_type, key_size=4, value_size=8,
                                               max_entries=entries))
    m = sys_.task.files.get(fd).map
    keys = [(i % entries).to_bytes(4, "little") for i in range(n)]
    value = (7).to_bytes(8, "little")

    def updates():
        upd = m.prog_update
        for key in keys:
            upd(key, value, BPF_ANY, 0)

    def lookups():
        look = m.prog_lookup
        for key in keys:
            look(key, 0)

    up = rate(n, updates)
    look = rate(n, lookups)
    sys_.close(fd)
    return look, up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="operations per measurement")
    ap.add_argument("--entries", type=int, default=1024, help="max_entries (keys cycle through them)")
    ap.add_argument("--linux", action="store_true", help="also time bpf() on this machine's kernel")
    args = ap.parse_args()
    sim = open_kernel("sim")
    rows = []
    for name, mt in (("hash", MapType.HASH), ("array", MapType.ARRAY)):
        rows.append((name, "sim bpf()", *bench_syscalls(sim, mt, args.n, args.entries)))
        rows.append((name, "sim program API", *bench_program_side(sim, mt, args.n, args.entries)))
        if args.linux:
            rows.append((name, "linux bpf()", *bench_syscalls(open_kernel("linux"), mt, args.n, args.entries)))
    for name, mt in (("lru", MapType.LRU_HASH), ("pcpu_a", MapType.PERCPU_ARRAY)):
        rows.append((name, "sim program API", *bench_program_side(sim, mt, args.n, args.entries)))
    print(f"{'map':6} {'path':18} {'lookups/s':>12} {'updates/s':>12}   (n={args.n}, max_entries={args.entries})")
    for name, path, look, up in rows:
        print(f"{name:6} {path:18} {look:12,.0f} {up:12,.0f}")
    sim.close_all()


if __name__ == "__main__":
    main()
