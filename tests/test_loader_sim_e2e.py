"""The example programs run on kernel_sim through the loader, end to end.

A simulated process ("cat") makes real syscalls through the kernel's syscall entry (so the
kernel functions that kprobes and tracepoints sit on are really called); the loader's
programs fire on them and their perf/ring records decode to that process's pid, comm and
file names. Old-release kernels (5.3.0) take the tracefs kprobe path and must behave the same.
"""

from __future__ import annotations

import struct

import pytest

from kernel_sim.uapi.epoll import O_RDONLY
from loader.backends import open_kernel
from loader.ebpf import Ebpf
from loader.perf_buffer import PerfEventArray
from loader.ringbuf_reader import RingBuf
from tests.conftest import REPO

EXAMPLES = REPO / "examples"
EVENT = struct.Struct("<IIiI16s256s")
AT_FDCWD = -100


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode()


class Proc:
    """A simulated process driven step by step from the test."""

    def __init__(self, sys, comm: str = "cat") -> None:
        self.k = sys.kernel
        self.task = self.k.spawn(comm)

    @property
    def pid(self) -> int:
        return self.task.tgid

    def call(self, name: str, *args: int) -> int:
        return self.k.syscall(self.task, name, *args)

    def cat(self, path: str, chunk: int = 4) -> int:
        """open, read in small chunks to EOF, close; the number of read() calls."""
        fd = self.call("openat", AT_FDCWD, self.task.memory.put_str(path), O_RDONLY, 0)
        assert fd >= 0, fd
        buf = self.task.memory.alloc(chunk)
        reads = 1
        while self.call("read", fd, buf, chunk) > 0:
            reads += 1
        self.call("close", fd)
        return reads


@pytest.fixture(params=["6.6.0", "5.3.0"])
def sim(request):
    sys = open_kernel("sim", cpus=2, release=request.param)
    yield sys
    sys.close_all()


def test_opensnoop_kprobe_events_decode(sim):
    with Ebpf.load_file(EXAMPLES / "opensnoop.bpf.o", kernel=sim) as ebpf:
        prog = ebpf.program("opensnoop")
        prog.load()
        link = prog.attach("do_sys_openat2")
        assert link.attach_mode == ("ioctl" if sim.uname().release.startswith("5.3") else "perf_link")
        perf = PerfEventArray(ebpf.take_map("events"))
        bufs = perf.open_all(page_count=4)
        proc = Proc(sim)
        proc.cat("/etc/hostname")
        proc.cat("/etc/passwd")
        events = [EVENT.unpack_from(raw) for buf in bufs for raw in buf.read_events()[0]]
        mine = [(pid, dfd, cstr(comm), cstr(fn)) for pid, _uid, dfd, _p, comm, fn in events if pid == proc.pid]
        assert mine == [(proc.pid, AT_FDCWD, "cat", "/etc/hostname"), (proc.pid, AT_FDCWD, "cat", "/etc/passwd")]
        link.detach()
        proc.cat("/etc/hostname")
        assert [raw for buf in bufs for raw in buf.read_events()[0]] == []
        perf.close()


def test_kprobe_and_kretprobe_fill_a_histogram(sim):
    with Ebpf.load_file(EXAMPLES / "latency.bpf.o", kernel=sim) as ebpf:
        for prog in ebpf.programs.values():
            prog.load()
            prog.attach()
        reads = Proc(sim).cat("/etc/passwd", chunk=16)
        hist = ebpf.map("hist")
        assert sum(v for _slot, v in hist.items()) == reads
        # Every entry timestamp of the reader was consumed by its return; the loader's own reads of
        # sysfs while attaching the kretprobe (after the kprobe) may leave its thread's, as on Linux.
        assert set(ebpf.map("start").keys()) <= {sim.getpid()}
        assert ebpf.program("vfs_read_return").info().run_cnt >= reads


def test_perf_buffer_overflow_reports_lost_samples(sim):
    with Ebpf.load_file(EXAMPLES / "opensnoop_tp.bpf.o", kernel=sim) as ebpf:
        prog = ebpf.program("opensnoop_tp")
        prog.load()
        prog.attach("syscalls", "sys_enter_openat")
        perf = PerfEventArray(ebpf.take_map("events"))
        bufs = perf.open_all(page_count=1)
        proc = Proc(sim)
        cpu = proc.task.cpu if hasattr(proc.task, "cpu") else None
        for _ in range(50):
            proc.call("close", proc.call("openat", AT_FDCWD, proc.task.memory.put_str("/etc/hostname"), O_RDONLY, 0))
        first = [buf.read_events() for buf in bufs]
        kept = sum(len(s) for s, _l in first)
        assert 0 < kept < 50 and all(lost == 0 for _s, lost in first)  # LOST comes before the next sample
        proc.call("close", proc.call("openat", AT_FDCWD, proc.task.memory.put_str("/etc/hostname"), O_RDONLY, 0))
        second = [buf.read_events() for buf in bufs]
        assert sum(len(s) for s, _l in second) == 1
        assert sum(lost for _s, lost in second) == 50 - kept
        assert cpu is None or any(buf.cpu == cpu for buf in bufs)
        perf.close()


def test_ring_buffer_records_from_exec(sim):
    with Ebpf.load_file(EXAMPLES / "execsnoop.bpf.o", kernel=sim) as ebpf:
        prog = ebpf.program("execsnoop")
        prog.load()
        prog.attach()
        rb = RingBuf(ebpf.take_map("rb"))
        proc = Proc(sim, "bash")
        assert proc.call("execve", proc.task.memory.put_str("/bin/cat"), 0, 0) == 0
        records = rb.drain()
        assert len(records) == 1
        assert struct.unpack_from("<I", records[0])[0] == proc.pid
        assert b"/bin/cat" in records[0]
        rb.close()


def test_syscall_counter_counts_by_number(sim):
    with Ebpf.load_file(EXAMPLES / "syscall_counter.bpf.o", kernel=sim) as ebpf:
        prog = ebpf.program("syscall_counter")
        prog.load()
        prog.attach("x64_sys_call")
        proc = Proc(sim)
        for _ in range(3):
            proc.call("getpid")
        counts = dict(ebpf.map("SYSCALL_COUNTS").items())
        assert counts.get(39, 0) >= 3  # getpid is 39 on x86_64


def test_aya_log_records_from_syscall_counter(sim):
    from loader.aya_log import EbpfLogger

    with Ebpf.load_file(EXAMPLES / "syscall_counter.bpf.o", kernel=sim) as ebpf:
        prog = ebpf.program("syscall_counter")
        prog.load()
        logger = EbpfLogger(ebpf)
        prog.attach("x64_sys_call")
        proc = Proc(sim)
        proc.call("getpid")
        proc.call("getpid")
        records = [r for r in logger.read() if r.message.startswith("syscall 39 ")]
        assert [r.message for r in records][-2:] == ["syscall 39 called, 1 times", "syscall 39 called, 2 times"]
        assert {(r.level_name, r.module, r.file, r.line) for r in records} == {
            ("INFO", "syscall_counter", "src/main.rs", 42)}
        logger.close()


def test_aya_bare_kprobe_sections(sim):
    """Aya's bare "kprobe"/"kretprobe" sections: the function comes from attach()."""
    with Ebpf.load_file(REPO / "tests" / "objects" / "aya_sections.bpf.o", kernel=sim) as ebpf:
        hits = ebpf.map("hits")
        opened, closed, ret = ebpf.program("probe_open"), ebpf.program("probe_close"), ebpf.program("ret_open")
        for prog in (opened, closed, ret):
            prog.load()
        opened.attach("do_sys_openat2")
        ret.attach("do_sys_openat2")
        closed.attach("__x64_sys_close" if sim.uname().machine == "x86_64" else "close_fd")
        proc = Proc(sim)
        before = [hits[i] for i in range(3)]  # attaching itself opened sysfs/tracefs files
        for _ in range(3):
            proc.cat("/etc/hostname")
        assert [hits[i] - before[i] for i in range(3)] == [3, 3, 3]


def test_close_leaves_no_descriptor_behind(sim):
    """Everything an object opens (BTF, maps, programs, perf events, links, tracefs probes) closes with it."""
    fds = sim.task.files._files
    before = set(fds)
    for path in sorted(EXAMPLES.glob("*.bpf.o")):
        with Ebpf.load_file(path, kernel=sim) as ebpf:
            for prog in ebpf.programs.values():
                prog.load()
            for m in list(ebpf.maps.values()):
                if isinstance(m, PerfEventArray):
                    m.open_all(page_count=1)
                elif isinstance(m, RingBuf):
                    m.next()
            for prog in ebpf.programs.values():
                target = prog.definition.attach_target
                if target is not None:
                    prog.attach()
                elif "kprobe" in prog.section:
                    prog.attach("x64_sys_call")
            assert set(fds) != before
        assert set(fds) == before, path.name
    from loader.programs import read_text

    assert "aya_" not in read_text(sim, "/sys/kernel/tracing/kprobe_events")
