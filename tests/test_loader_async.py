"""The loader's readers plugged into runtime/ (one epoll reactor): real events, awaited, not polled.

On the real kernel: a tracepoint program's perf buffer samples and a ring buffer's records
arrive through PerfStream / RingStream while another thread makes the syscalls that fire them.
"""

from __future__ import annotations

import os
import struct
import subprocess

import pytest
import trio

from loader.backends import open_kernel
from loader.ebpf import Ebpf
from loader.perf_buffer import PerfEventArray
from loader.ringbuf_reader import RingBuf
from runtime.reactor import open_reactor
from runtime.streams import PerfStream, RingStream
from tests.conftest import REPO, linux_bpf_denied

EXAMPLES = REPO / "examples"
EVENT = struct.Struct("<IIiI16s256s")


@pytest.fixture
def linux():
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    return open_kernel("linux")


async def test_perf_events_awaited_through_the_reactor(linux, tmp_path):
    marker = str(tmp_path / "async_marker")
    with Ebpf.load_file(EXAMPLES / "opensnoop_tp.bpf.o", kernel=linux) as ebpf:
        prog = ebpf.program("opensnoop_tp")
        prog.load()
        with prog.attach("syscalls", "sys_enter_openat"):
            perf = PerfEventArray(ebpf.take_map("events"))
            bufs = perf.open_all(page_count=64)  # other processes' opens land here too
            async with open_reactor(linux) as reactor:
                stream = PerfStream(reactor, bufs)

                def opener():
                    os.close(os.open(marker, os.O_CREAT | os.O_WRONLY, 0o600))

                found = None
                with trio.fail_after(30):  # a hang guard, not a timing assertion
                    await trio.to_thread.run_sync(opener)
                    async for batch in stream:
                        for raw in batch.samples:
                            pid, _uid, _flags, _pad, _comm, filename = EVENT.unpack_from(raw)
                            if filename.split(b"\0", 1)[0] == marker.encode():
                                found = (pid, batch.cpu)
                        if found:
                            break
                stream.close()
            assert found[0] == os.getpid()
            perf.close()


async def test_ring_records_awaited_through_the_reactor(linux):
    with Ebpf.load_file(EXAMPLES / "execsnoop.bpf.o", kernel=linux) as ebpf:
        prog = ebpf.program("execsnoop")
        prog.load()
        with prog.attach():
            rb = RingBuf(ebpf.take_map("rb"))
            async with open_reactor(linux) as reactor:
                stream = RingStream(reactor, rb)
                with trio.fail_after(30):
                    await trio.to_thread.run_sync(lambda: subprocess.run(["/bin/true"], check=True))
                    async for record in stream:
                        if b"/bin/true" in record:
                            break
                stream.close()
            rb.close()


async def test_sim_kprobe_events_awaited_through_the_reactor():
    from tests.test_loader_sim_e2e import Proc

    sim = open_kernel("sim", cpus=2)
    try:
        with Ebpf.load_file(EXAMPLES / "opensnoop.bpf.o", kernel=sim) as ebpf:
            prog = ebpf.program("opensnoop")
            prog.load()
            with prog.attach("do_sys_openat2"):
                perf = PerfEventArray(ebpf.take_map("events"))
                bufs = perf.open_all(page_count=2)
                proc = Proc(sim)
                async with open_reactor(sim) as reactor:
                    stream = PerfStream(reactor, bufs)
                    seen = []
                    with trio.fail_after(30):  # a hang guard, not a timing assertion
                        await trio.to_thread.run_sync(lambda: proc.cat("/etc/passwd"))
                        async for batch in stream:
                            seen += [EVENT.unpack_from(raw) for raw in batch.samples]
                            if any(s[0] == proc.pid for s in seen):
                                break
                    stream.close()
                names = [s[5].split(b"\0", 1)[0] for s in seen if s[0] == proc.pid]
                assert names == [b"/etc/passwd"]
                perf.close()
    finally:
        sim.close_all()
