"""Loader reader benchmark: records/s through PerfBuffer.read_events and RingBuf.next.

The producer is the simulated kernel's own ring code (BpfOutputEvent.output for the perf
ring, kernel_sim's RingBuf.output for the BPF ring buffer), filled between reads; only the
reader side is timed. Also the typed map path: HashMap[key] with a BTF struct codec
(syscount's ``struct counter``) against the raw MapData.lookup it wraps.

    python bench/loader_readers.py [--n 20000] [--size 64]
"""

from __future__ import annotations

import argparse
import mmap
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel_sim.bpf.ringbuf import RingBuf as KernelRing  # noqa: E402
from kernel_sim.uapi.bpf import MapType  # noqa: E402
from loader.backends import open_kernel  # noqa: E402
from loader.ebpf import Ebpf  # noqa: E402
from loader.maps import MapData  # noqa: E402
from loader.perf_buffer import PerfBuffer  # noqa: E402
from loader.ringbuf_reader import RingBuf  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def perf_rate(n: int, size: int) -> float:
    k = open_kernel("sim", cpus=1)
    buf = PerfBuffer(k, 0, page_count=64)
    ev = k.task.files.get(buf.fd)
    payload = bytes(size)
    done, spent = 0, 0.0
    while done < n:
        batch = 0
        while batch < 512 and ev.output(payload) == 0:
            batch += 1
        t0 = time.perf_counter()
        samples, _lost = buf.read_events()
        spent += time.perf_counter() - t0
        done += len(samples)
    buf.close()
    k.close_all()
    return done / spent


class _RingSys:
    kind = "sim"

    def __init__(self, ring: KernelRing) -> None:
        self.ring = ring

    def mmap(self, fd, length, prot, flags, offset):
        return self.ring.mmap(length, prot, flags, offset)

    def munmap(self, buf):
        buf.munmap() if hasattr(buf, "munmap") else buf.close()

    def close(self, fd):
        pass


def ring_rate(n: int, size: int) -> float:
    ring = KernelRing(1 << 18)
    rb = RingBuf(MapData(_RingSys(ring), 0, "rb", MapType.RINGBUF, 0, 0, 1 << 18), page_size=mmap.PAGESIZE)
    payload = bytes(size)
    done, spent = 0, 0.0
    while done < n:
        batch = 0
        while batch < 512 and ring.output(payload) == 0:
            batch += 1
        t0 = time.perf_counter()
        while rb.next() is not None:
            done += 1
        spent += time.perf_counter() - t0
    rb.close()
    return done / spent


def map_rates(n: int) -> tuple[float, float]:
    k = open_kernel("sim", cpus=1)
    with Ebpf.load_file(REPO / "examples" / "syscount.bpf.o", kernel=k) as ebpf:
        counts = ebpf.map("counts")
        counts[1] = {"count": 5, "last_nr": 3, "comm": "bash"}
        key = (1).to_bytes(4, "little")
        t0 = time.perf_counter()
        for _ in range(n):
            counts[1]
        typed = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(n):
            counts.data.lookup(key)
        raw = n / (time.perf_counter() - t0)
    k.close_all()
    return typed, raw


def items_rates(entries: int) -> tuple[float, float]:
    """A whole hash map read back: batched (items) against key by key (_items_by_key)."""
    from loader.maps import HashMap

    k = open_kernel("sim", cpus=1)
    from kernel_sim.uapi.bpf import BpfCmd, MapCreateAttr, make_attr

    fd = k.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=MapType.HASH, key_size=4, value_size=8,
                                            max_entries=entries))
    h = HashMap(MapData(k, fd, "h", MapType.HASH, 4, 8, entries))
    for i in range(entries):
        h[i] = i
    t0 = time.perf_counter()
    assert len(dict(h.items())) == entries
    batched = entries / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    assert len(dict(h._items_by_key())) == entries
    by_key = entries / (time.perf_counter() - t0)
    h.close()
    k.close_all()
    return batched, by_key


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--size", type=int, default=64, help="sample payload bytes")
    a = ap.parse_args()
    p = perf_rate(a.n, a.size)
    r = ring_rate(a.n, a.size)
    typed, raw = map_rates(a.n // 4)
    print(f"PerfBuffer.read_events: {p:>10,.0f} samples/s ({1e6 / p:.2f} us/sample, {a.size}-byte payload)")
    print(f"RingBuf.next:           {r:>10,.0f} records/s ({1e6 / r:.2f} us/record, {a.size}-byte payload)")
    print(f"HashMap[key] BTF struct:{typed:>10,.0f} lookups/s ({1e6 / typed:.2f} us)")
    print(f"MapData.lookup raw:     {raw:>10,.0f} lookups/s ({1e6 / raw:.2f} us)")
    batched, by_key = items_rates(2000)
    print(f"HashMap.items() batch:  {batched:>10,.0f} entries/s; key by key {by_key:,.0f} entries/s "
          f"({batched / by_key:.1f}x, 2000 entries)")


if __name__ == "__main__":
    main()
