"""End to end: events per second from the kprobe hit to the decoded Python object in the consumer.

A kprobe on do_sys_openat2 sends {ts, pid, uid, comm, filename} for every open the simulated
CPUs make (the "storm" workload: openat/close as fast as they go), once through a perf event
array (one perf buffer per CPU) and once through a BPF ring buffer. The consumer is the real
one: runtime/'s epoll reactor under trio, PerfStream / RingStream, and loader.event_decode
turning each record into a dict. Printed per transport:

- decoded/s: records that reached the consumer as Python objects, per second;
- hits/s:    kprobe hits (decoded + dropped by the kernel because the buffer was full);
- dropped:   the share the kernel could not write (the consumer fell behind; producers never wait);
- latency:   p50 / p99 of (consumer clock at decode - bpf_ktime_get_ns() in the program).

The simulated CPUs are threads of this process, so producers and consumer share one
interpreter: the numbers measure the whole pipeline on that budget. ``--kernel linux`` runs the
same consumer against this machine's kernel for reference (its kprobes are compiled out, so the
program sits on the openat tracepoint and counts one driver process's opens).

    python bench/e2e.py [--seconds 3] [--cpus 2] [--workload storm] [--pages 64] [--kernel linux]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SOURCE = r"""
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct event {
    __u64 ts;
    __u32 pid;
    __u32 uid;
    char comm[16];
    char filename[256];
};

#ifdef USE_RINGBUF
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, RING_BYTES); } rb SEC(".maps");
#else
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4); __uint(value_size, 4); } events SEC(".maps");
#endif
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); }
    drops SEC(".maps");

#ifdef TRACEPOINT
/* The real kernel here has no kprobes: the openat tracepoint, for one process only. */
struct openat_ctx { __u64 common; __s32 nr; __u32 pad; __u64 dfd; __u64 filename; __u64 flags; __u64 mode; };
const volatile __u32 target_tgid = 0;
#define FILENAME_PTR ((const void *)ctx->filename)
SEC("tracepoint/syscalls/sys_enter_openat")
int e2e(struct openat_ctx *ctx)
#else
#define FILENAME_PTR ((const void *)PT_REGS_PARM2(ctx))
SEC("kprobe/do_sys_openat2")
int e2e(struct pt_regs *ctx)
#endif
{
    struct event e = {};
    __u32 zero = 0;
    long err;

    e.ts = bpf_ktime_get_ns();
    e.pid = bpf_get_current_pid_tgid() >> 32;
#ifdef TRACEPOINT
    if (e.pid != target_tgid)
        return 0;
#endif
    e.uid = (__u32)bpf_get_current_uid_gid();
    bpf_get_current_comm(&e.comm, sizeof(e.comm));
    bpf_probe_read_user_str(&e.filename, sizeof(e.filename), FILENAME_PTR);
#ifdef USE_RINGBUF
    err = bpf_ringbuf_output(&rb, &e, sizeof(e), 0);
#else
    err = bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
#endif
    if (err) {
        __u64 *n = bpf_map_lookup_elem(&drops, &zero);
        if (n)
            __sync_fetch_and_add(n, 1);
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def build(tmp: Path, ringbuf: bool, ring_bytes: int, tracepoint: bool = False) -> Path:
    src = tmp / "e2e.bpf.c"
    src.write_text(SOURCE)
    out = tmp / f"e2e_{'ringbuf' if ringbuf else 'perf'}{'_tp' if tracepoint else ''}.bpf.o"
    defines = [f"-DRING_BYTES={ring_bytes}"] + (["-DUSE_RINGBUF"] if ringbuf else [])
    defines += ["-DTRACEPOINT"] if tracepoint else []
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    "-I/usr/include/x86_64-linux-gnu", *defines, "-c", str(src), "-o", str(out)], check=True)
    return out


def run_one(obj: Path, ringbuf: bool, args: argparse.Namespace) -> dict:
    import trio

    from loader.backends import open_kernel
    from loader.ebpf import Ebpf
    from loader.event_decode import SampleFormatter, object_types
    from runtime import PerfStream, RingStream, open_reactor

    driver = None
    if args.kernel == "linux":
        from loader.ebpf import EbpfLoader

        # The load: another process opening a file in a loop, once we say go.
        driver = subprocess.Popen([sys.executable, "-c", "import sys\nsys.stdin.readline()\nwhile True:\n"
                                   "    open('/etc/hostname').close()"], stdin=subprocess.PIPE, text=True)
        sys_ = open_kernel("linux")
        clock_ns = time.monotonic_ns  # bpf_ktime_get_ns is CLOCK_MONOTONIC
        ebpf = EbpfLoader(sys_).set_global("target_tgid", driver.pid).load_file(obj)
        prog = ebpf.program("e2e")
        prog.load()
        link = prog.attach("syscalls", "sys_enter_openat")
    else:
        sys_ = open_kernel("sim", cpus=args.cpus)
        clock_ns = sys_.kernel.clock_ns
        ebpf = Ebpf.load_file(str(obj), kernel=sys_)
        prog = ebpf.program("e2e")
        prog.load()
        link = prog.attach("do_sys_openat2")
    fmt = SampleFormatter(object_types(str(obj)), padded=not ringbuf)
    latencies: list[int] = []
    decoded = 0
    batches = 0

    if ringbuf:
        from loader.ringbuf_reader import RingBuf

        source = RingBuf(ebpf.take_map("rb"))
    else:
        from loader.perf_buffer import PerfEventArray

        source = PerfEventArray(ebpf.take_map("events"))
        buffers = source.open_all(page_count=args.pages)

    async def consume() -> float:
        nonlocal decoded, batches
        async with open_reactor(sys_) as reactor:
            stream = RingStream(reactor, source) if ringbuf else PerfStream(reactor, buffers)
            if driver is not None:
                driver.stdin.write("go\n")
                driver.stdin.flush()
            else:
                sys_.start_workload(args.workload)
            t0 = time.perf_counter()
            with trio.move_on_after(args.seconds):
                if ringbuf:
                    async for raw in stream:
                        batch = [raw, *stream.drain(limit=4096)]
                        batches += 1
                        now = clock_ns()
                        for rec in batch:
                            ev = fmt.decode(rec)
                            decoded += 1
                            if decoded % 16 == 0:
                                latencies.append(now - ev["ts"])
                else:
                    async for batch in stream:
                        batches += 1
                        now = clock_ns()
                        for raw in batch.samples:
                            ev = fmt.decode(raw)
                            decoded += 1
                            if decoded % 16 == 0:
                                latencies.append(now - ev["ts"])
            elapsed = time.perf_counter() - t0
            if driver is not None:
                driver.kill()
                driver.wait()
            else:
                sys_.stop_workload()
            stream.close()
        return elapsed

    try:
        elapsed = trio.run(consume)
        per_cpu = ebpf.map("drops")[0]  # a per-CPU array: one count per possible CPU
        drops = sum(per_cpu) if isinstance(per_cpu, list | tuple) else int(per_cpu)
    finally:
        link.detach()
        source.close()
        ebpf.close()
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        if sys_.kind == "sim":
            sys_.close_all()
    hits = decoded + drops
    lat = sorted(latencies)
    return {
        "decoded_per_s": decoded / elapsed,
        "hits_per_s": hits / elapsed,
        "dropped_pct": 100.0 * drops / hits if hits else 0.0,
        "p50_ms": statistics.median(lat) / 1e6 if lat else float("nan"),
        "p99_ms": lat[int(len(lat) * 0.99) - 1] / 1e6 if len(lat) >= 100 else float("nan"),
        "decoded": decoded,
        "seconds": elapsed,
        "per_batch": decoded / batches if batches else 0.0,
    }


def consumer_only(obj: Path, seconds: float) -> float:
    """The consumer's ceiling: records/s read from a perf buffer and decoded, with the kernel
    side reduced to writing pre-built samples (no kprobe, no BPF program)."""
    import struct

    from loader.backends import open_kernel
    from loader.event_decode import SampleFormatter, object_types
    from loader.perf_buffer import PerfBuffer

    sys_ = open_kernel("sim", cpus=1)
    buf = PerfBuffer(sys_, 0, page_count=64)
    event = sys_.task.files.get(buf.fd)  # the kernel's BpfOutputEvent behind the fd
    fmt = SampleFormatter(object_types(str(obj)))
    raw = struct.pack("<QII16s256s", 1, 42, 0, b"bench", b"/etc/hostname")
    decoded = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        while event.output(raw) == 0:
            pass
        samples, _lost = buf.read_events()
        for s in samples:
            fmt.decode(s)
        decoded += len(samples)
    rate = decoded / (time.perf_counter() - t0)
    buf.close()
    sys_.close_all()
    return rate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--kernel", choices=("sim", "linux"), default="sim",
                   help="linux: the openat tracepoint of this machine's kernel (no kprobes here), for reference")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--workload", default="storm")
    p.add_argument("--pages", type=int, default=64, help="perf buffer pages per CPU")
    p.add_argument("--ring-bytes", type=int, default=256 * 1024, help="BPF ring buffer size")
    p.add_argument("--switch-interval", type=float, default=None, metavar="S",
                   help="sys.setswitchinterval: how long a thread may hold the GIL (Python's default: 0.005)")
    args = p.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if shutil.which("clang") is None:
        print("e2e: clang is needed to build the benchmark's BPF program", file=sys.stderr)
        return 1
    linux = args.kernel == "linux"
    where = ("tracepoint syscalls/sys_enter_openat on Linux, one process opening in a loop" if linux else
             f"kprobe do_sys_openat2 (sim, x86_64, {args.cpus} CPUs, {args.workload} workload)")
    print(f"e2e: {where} -> decoded dict in the consumer; {args.seconds:g} s per transport, GIL switch interval "
          f"{sys.getswitchinterval() * 1000:g} ms")
    with tempfile.TemporaryDirectory() as tmp:
        if not linux:
            rate = consumer_only(build(Path(tmp), False, args.ring_bytes), min(args.seconds, 1.0))
            print(f"  {'consumer alone (perf)':<26} decoded {rate:>9,.0f} ev/s   (samples written straight into "
                  "the buffer: the reader's and decoder's ceiling)")
        for ringbuf in (False, True):
            obj = build(Path(tmp), ringbuf, args.ring_bytes, tracepoint=linux)
            r = run_one(obj, ringbuf, args)
            name = (f"ring buffer ({args.ring_bytes // 1024} KiB)" if ringbuf
                    else f"perf buffer ({args.pages} pages/CPU)")
            print(f"  {name:<26} decoded {r['decoded_per_s']:>9,.0f} ev/s   hits {r['hits_per_s']:>9,.0f} ev/s   "
                  f"dropped {r['dropped_pct']:5.1f}%   latency p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms   "
                  f"({r['decoded']} events in {r['seconds']:.2f} s, {r['per_batch']:.1f} per read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
