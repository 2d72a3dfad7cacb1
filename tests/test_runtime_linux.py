"""The reactor on the real kernel with real BPF buffers (tracepoint programs; bpf() needed).

Linux's perf_poll is destructive (it clears the buffer's wake-up flag), and trio's own epoll
polls the reactor's epoll before the reactor calls epoll_wait - so a perf buffer's readiness
is consumed on the way and epoll_wait reports nothing. A single event on one CPU must still
reach the reader: that is what the first test pins down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
import trio

from loader.backends import open_kernel
from loader.event_decode import SampleFormatter, object_types
from runtime import PerfStream, RingStream, open_reactor
from tests.conftest import linux_bpf_denied

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.skipif(linux_bpf_denied() is not None, reason=str(linux_bpf_denied()))


def open_on_cpu(cpu: int, path: Path) -> None:
    def run() -> None:
        os.sched_setaffinity(0, {cpu})
        with open(path):
            pass

    t = threading.Thread(target=run)
    t.start()
    t.join()


# opensnoop_tp, but only for one tgid (set before load): on a busy machine other processes'
# opens would wake the buffer again and hide a lost wake-up.
ONLY_PID = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct sys_enter_openat_ctx { __u64 common; __s32 nr; __u32 pad; __u64 dfd; __u64 filename; __u64 flags; __u64 mode; };
struct event { __u32 pid; __u32 pad; char filename[64]; };
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4); __uint(value_size, 4); } events SEC(".maps");
const volatile __u32 target_tgid = 0;
SEC("tracepoint/syscalls/sys_enter_openat")
int only_pid(struct sys_enter_openat_ctx *ctx) {
    struct event e = {};
    e.pid = bpf_get_current_pid_tgid() >> 32;
    if (e.pid != target_tgid) return 0;
    bpf_probe_read_user_str(&e.filename, sizeof(e.filename), (const void *)ctx->filename);
    bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def only_pid_object(tmp_path_factory) -> Path:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed")
    d = tmp_path_factory.mktemp("only_pid")
    (d / "only_pid.bpf.c").write_text(ONLY_PID)
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                    str(d / "only_pid.bpf.c"), "-o", str(d / "only_pid.bpf.o")], check=True)
    return d / "only_pid.bpf.o"


@pytest.mark.parametrize("cpu", sorted(os.sched_getaffinity(0))[:2])
async def test_one_event_on_one_cpu_reaches_the_perf_stream(cpu, tmp_path, only_pid_object):
    from loader.ebpf import EbpfLoader
    from loader.perf_buffer import PerfEventArray

    sys = open_kernel("linux")
    obj = only_pid_object
    ebpf = EbpfLoader(sys).set_global("target_tgid", os.getpid()).load_file(obj)
    fmt = SampleFormatter(object_types(str(obj)))
    marker = Path("/tmp") / f"one-{uuid.uuid4().hex[:8]}"  # short: the program copies 64 bytes of it
    marker.write_text("")
    try:
        prog = ebpf.program("only_pid")
        prog.load()
        prog.attach("syscalls", "sys_enter_openat")
        perf = PerfEventArray(ebpf.take_map("events"))
        buffers = perf.open_all(page_count=64)
        async with open_reactor(sys) as reactor:
            stream = PerfStream(reactor, buffers)
            await trio.to_thread.run_sync(open_on_cpu, cpu, marker)
            seen = None
            with trio.move_on_after(20):
                async for batch in stream:
                    for raw in batch.samples:
                        ev = fmt.decode(raw)
                        if ev["filename"] == str(marker):
                            seen = (batch.cpu, ev["pid"])
                    if seen:
                        break
            stream.close()
        assert seen == (cpu, os.getpid())
        perf.close()
    finally:
        ebpf.close()
        marker.unlink()


async def test_ring_stream_sees_an_exec():
    from loader.ebpf import Ebpf
    from loader.ringbuf_reader import RingBuf

    sys = open_kernel("linux")
    obj = EXAMPLES / "execsnoop.bpf.o"
    ebpf = Ebpf.load_file(str(obj), kernel=sys)
    fmt = SampleFormatter(object_types(str(obj)), padded=False)
    try:
        prog = next(iter(ebpf.programs.values()))
        prog.load()
        prog.attach()
        rb = RingBuf(ebpf.take_map("rb"))
        async with open_reactor(sys) as reactor:
            stream = RingStream(reactor, rb)
            proc = await trio.to_thread.run_sync(lambda: subprocess.Popen(["/bin/true"]))
            found = None
            with trio.move_on_after(20):
                async for raw in stream:
                    ev = fmt.decode(raw)
                    if ev["pid"] == proc.pid:
                        found = ev
                        break
            stream.close()
            proc.wait()
        assert found is not None and found["filename"] == "/bin/true" and found["comm"] == "true"
        rb.close()
    finally:
        ebpf.close()
