"""The loader against this machine's kernel: real programs, real events, real perf and ring buffers.

Everything here needs bpf() and tracefs (root on Linux); it skips with the reason where bpf()
is denied. BPF objects that the examples do not cover (a uprobe, a verifier rejection) are
built with clang into tmp_path.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from loader.backends import open_kernel
from loader.ebpf import Ebpf, EbpfLoader
from loader.errors import VerifierError
from loader.links import PerfLink
from loader.maps import HashMap, PerCpuArray
from loader.perf_buffer import PerfEventArray
from loader.programs import UProbe, kernel_version, symbol_file_offset
from loader.ringbuf_reader import RingBuf
from tests.conftest import REPO, TRACEFS, ensure_tracefs, linux_bpf_denied

EXAMPLES = REPO / "examples"
EVENT = struct.Struct("<IIiI16s256s")
ARCH = os.uname().machine
BPF_CFLAGS = ["-O2", "-g", "-target", "bpf", f"-D__TARGET_ARCH_{ {'x86_64': 'x86', 'aarch64': 'arm64'}.get(ARCH, ARCH)}",
              f"-I/usr/include/{ARCH}-linux-gnu"]


@pytest.fixture(scope="module")
def linux():
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    ensure_tracefs()
    return open_kernel("linux")


def clang_bpf(tmp_path: Path, name: str, source: str) -> Path:
    if shutil.which("clang") is None:
        pytest.fail("clang is required to build test BPF objects (installed by CI)")
    src = tmp_path / f"{name}.bpf.c"
    src.write_text(source)
    out = tmp_path / f"{name}.bpf.o"
    subprocess.run(["clang", *BPF_CFLAGS, "-c", str(src), "-o", str(out)], check=True)
    return out


def cstr(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def test_every_example_loads_on_linux(linux):
    for path in sorted(EXAMPLES.glob("*.bpf.o")):
        with Ebpf.load_file(path, kernel=linux) as ebpf:
            assert ebpf.programs and ebpf.maps is not None
            for prog in ebpf.programs.values():
                prog.load()
                info = prog.info()
                assert info.type == prog.prog_type
                assert info.xlated_prog_len // 8 >= 1
                assert info.name.decode() == prog.kernel_name
            for name, m in ebpf.maps.items():
                info = m.info()
                assert (info.type, info.key_size, info.value_size) == (m.map_type, m.key_size, m.value_size)
                assert info.name.decode() == ebpf.obj.maps[name].kernel_name


def test_tracepoint_events_through_perf_buffers(linux, tmp_path):
    with Ebpf.load_file(EXAMPLES / "opensnoop_tp.bpf.o", kernel=linux) as ebpf:
        prog = ebpf.program("opensnoop_tp")
        prog.load()
        link = prog.attach("syscalls", "sys_enter_openat")
        assert isinstance(link, PerfLink)
        perf = PerfEventArray(ebpf.take_map("events"))
        bufs = perf.open_all(page_count=64)  # every openat on a busy machine lands here: room to spare
        assert [b.cpu for b in bufs] == sorted(b.cpu for b in bufs) and bufs
        names = [str(tmp_path / f"marker_{i}") for i in range(5)]
        for n in names:
            os.close(os.open(n, os.O_CREAT | os.O_WRONLY, 0o600))
        seen = []
        for buf in bufs:
            events, lost = buf.read_events()
            assert lost == 0
            for raw in events:
                pid, _uid, flags, _pad, comm, filename = EVENT.unpack_from(raw)
                if pid == os.getpid() and b"marker_" in filename:
                    seen.append(cstr(filename).decode())
                    assert flags & os.O_CREAT
        assert sorted(seen) == names  # per-CPU buffers: order holds within a CPU, not across them
        link.detach()
        os.close(os.open(names[0], os.O_RDONLY))
        after = [raw for buf in bufs for raw in buf.read_events()[0] if b"marker_" in raw]
        assert after == []  # detached: no more events
        perf.close()


def test_ring_buffer_events_from_exec(linux):
    with Ebpf.load_file(EXAMPLES / "execsnoop.bpf.o", kernel=linux) as ebpf:
        prog = ebpf.program("execsnoop")
        prog.load()
        with prog.attach():
            rb = RingBuf(ebpf.take_map("rb"))
            child = subprocess.run(["/bin/true"])
            assert child.returncode == 0
            records = rb.drain()
        assert any(b"/bin/true" in r or b"true\0" in r for r in records), records
        assert rb.next() is None
        rb.close()


def test_globals_set_before_load_and_rodata_frozen(linux):
    loader = EbpfLoader(kernel=linux).set_global("target_tgid", os.getpid()).set_global("sample_every", 2)
    with loader.load_file(EXAMPLES / "globals.bpf.o") as ebpf:
        prog = ebpf.program("count_syscalls")
        prog.load()
        rodata = ebpf.map(".rodata")
        raw = rodata.data.lookup(b"\0" * 4)
        assert struct.unpack_from("<I", raw, 0)[0] == os.getpid()
        assert struct.unpack_from("<Q", raw, 8)[0] == 2
        with pytest.raises(OSError) as e:
            rodata.data.update(b"\0" * 4, raw)
        assert e.value.errno == errno.EPERM  # frozen
        with prog.attach("raw_syscalls", "sys_enter"):
            for _ in range(20):
                os.getppid()
        bss = ebpf.map(".bss")[0]  # decoded by the .bss DATASEC: variables by name
        assert bss["calls_seen"] >= 20 and bss["calls_sampled"] == bss["calls_seen"] // 2
        assert bss["last_tgid"] == os.getpid()
        assert ebpf.map(".rodata")[0] == {"target_tgid": os.getpid(), "sample_every": 2}
    with pytest.raises(Exception, match="no global"):
        EbpfLoader(kernel=linux).set_global("nope", 1).load_file(EXAMPLES / "globals.bpf.o")


def test_hash_map_filled_by_a_program(linux):
    with Ebpf.load_file(EXAMPLES / "syscount.bpf.o", kernel=linux) as ebpf:
        prog = ebpf.program("syscount")
        prog.load()
        counts = HashMap(ebpf.map("counts"))
        with prog.attach("raw_syscalls", "sys_enter"):
            for _ in range(10):
                os.getppid()
        mine = counts[os.getpid()]  # decoded from the map's BTF: struct counter -> dict
        assert set(mine) == {"count", "last_nr", "comm"}
        assert mine["count"] >= 10
        assert mine["comm"] == Path("/proc/self/comm").read_text().strip()[:15]
        assert all(v["count"] > 0 for v in counts.values())


UPROBE_TARGET = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) int bpfload_target(int x) { __asm__ volatile(""); return x * 2; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), s = 0;
    for (int i = 0; i < n; i++) s += bpfload_target(i);
    printf("%d\n", s);
    return 0;
}
"""

UPROBE_PROG = r"""
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, __u32); __type(value, __u64); }
    args SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); }
    rets SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } calls SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4); __uint(value_size, 4); } returns SEC(".maps");
SEC("uprobe")
int on_call(struct pt_regs *ctx) {
    __u32 x = (__u32)PT_REGS_PARM1(ctx);
    __u64 one = 1, *v = bpf_map_lookup_elem(&args, &x);
    if (v) __sync_fetch_and_add(v, 1); else bpf_map_update_elem(&args, &x, &one, BPF_ANY);
    bpf_ringbuf_output(&calls, &x, sizeof(x), 0);
    return 0;
}
SEC("uretprobe")
int on_return(struct pt_regs *ctx) {
    __u32 k = 0;
    __u64 rc = PT_REGS_RC(ctx), *sum = bpf_map_lookup_elem(&rets, &k);
    if (sum) *sum += rc;
    bpf_perf_event_output(ctx, &returns, BPF_F_CURRENT_CPU, &rc, sizeof(rc));
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_uprobe_and_uretprobe_on_a_real_binary(linux, tmp_path):
    if shutil.which("cc") is None and shutil.which("gcc") is None and shutil.which("clang") is None:
        pytest.fail("a C compiler is required")
    (tmp_path / "target.c").write_text(UPROBE_TARGET)
    binary = tmp_path / "target"
    subprocess.run([shutil.which("cc") or "clang", "-O1", "-o", str(binary), str(tmp_path / "target.c")], check=True)
    obj = clang_bpf(tmp_path, "up", UPROBE_PROG)
    assert symbol_file_offset(str(binary), "bpfload_target") > 0
    with Ebpf.load_file(obj, kernel=linux) as ebpf:
        entry, ret = ebpf.program("on_call"), ebpf.program("on_return")
        assert isinstance(entry, UProbe) and ret.definition.is_retprobe
        entry.load()
        ret.load()
        l1 = entry.attach(str(binary), "bpfload_target")
        l2 = ret.attach(str(binary), "bpfload_target")
        calls = RingBuf(ebpf.take_map("calls"))
        returns = PerfEventArray(ebpf.take_map("returns"))
        bufs = returns.open_all()
        out = subprocess.run([str(binary), "7"], capture_output=True, text=True, check=True)
        counts = HashMap(ebpf.map("args"))
        assert dict(counts.items()) == {i: 1 for i in range(7)}
        rets = PerCpuArray(ebpf.map("rets"))
        assert sum(rets[0]) == int(out.stdout) == sum(2 * i for i in range(7))
        assert [struct.unpack("<I", r)[0] for r in calls.drain()] == list(range(7))  # ring buffer, in order
        samples = [struct.unpack_from("<Q", raw)[0] for buf in bufs for raw in buf.read_events()[0]]
        assert sorted(samples) == [2 * i for i in range(7)]  # perf buffers (one per CPU)
        calls.close()
        returns.close()
        l1.detach()
        l2.detach()
        subprocess.run([str(binary), "3"], capture_output=True, check=True)
        assert dict(counts.items()) == {i: 1 for i in range(7)}  # detached: unchanged


BAD_PROG = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); }
    m SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_openat")
int bad(void *ctx) {
    __u32 k = 0;
    __u64 *v = bpf_map_lookup_elem(&m, &k);
    return *v;   /* no NULL check: the verifier must refuse */
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_verifier_rejection_carries_the_log(linux, tmp_path):
    obj = clang_bpf(tmp_path, "bad", BAD_PROG)
    with Ebpf.load_file(obj, kernel=linux) as ebpf:
        prog = ebpf.program("bad")
        with pytest.raises(VerifierError) as e:
            prog.load()
        assert e.value.errno == errno.EACCES
        assert "map_value_or_null" in e.value.log
        assert "invalid mem access" in str(e.value)
        assert not prog.loaded


def test_kernel_version_from_uname(linux):
    major, minor, _patch = kernel_version(linux)
    assert f"{major}.{minor}" in os.uname().release


def test_socket_filter_on_a_real_socket(linux):
    import socket

    with Ebpf.load_file(REPO / "tests" / "objects" / "legacy_maps.bpf.o", kernel=linux) as ebpf:
        prog = ebpf.program("count_packets")
        prog.load()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        packets = ebpf.map("packets")
        before = sum(v for _k, v in packets.items())
        link = prog.attach(rx)
        for _ in range(3):
            tx.sendto(b"dropped", rx.getsockname())
        link.detach()  # the filter returned 0 for each: they were dropped, and counted
        tx.sendto(b"kept", rx.getsockname())
        assert rx.recv(64) == b"kept"
        assert sum(v for _k, v in packets.items()) - before == 3
        rx.close()
        tx.close()


def test_xdp_link_on_loopback(linux):
    import socket

    with Ebpf.load_file(REPO / "tests" / "objects" / "legacy_maps.bpf.o", kernel=linux) as ebpf:
        prog = ebpf.program("xdp_stats")
        prog.load()
        stats = ebpf.map("pinned_stats")
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        with prog.attach("lo") as link:
            assert link.fd >= 0
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x" * 100, rx.getsockname())
            assert rx.recv(200) == b"x" * 100  # XDP_PASS
        seen = [int.from_bytes(v[:8], "little") for v in stats[1]]
        assert sum(seen) >= 100 + 28  # payload + IP/UDP headers went through the program
        rx.close()


def test_aya_bare_sections_attach_where_the_call_says(linux):
    """Aya's bare sections ("tracepoint", "raw_tp", "uprobe", "perf_event"): targets from attach()."""
    from kernel_sim.uapi.perf import PerfSwId, PerfType
    from loader.maps import Array

    libc = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6") if ARCH == "x86_64" else None
    with Ebpf.load_file(REPO / "tests" / "objects" / "aya_sections.bpf.o", kernel=linux) as ebpf:
        hits = Array(ebpf.map("hits"))
        for prog in ebpf.programs.values():
            prog.load()
        links = [
            ebpf.program("any_tp").attach("syscalls", "sys_enter_getppid"),
            ebpf.program("any_raw_tp").attach("sys_enter"),
            ebpf.program("on_sample").attach(PerfType.SOFTWARE, PerfSwId.TASK_CLOCK, sample_period=200_000,
                                             pid=0, cpu=-1),
        ]
        if libc and os.path.exists(libc):
            links.append(ebpf.program("malloc_enter").attach(libc, "malloc", pid=os.getpid()))
        for _ in range(5):
            os.getppid()
        spins = 0
        while hits[7] == 0 and spins < 50_000_000:  # burn CPU until the task clock has sampled us
            spins += 1
        blob = [bytearray(1 << 20) for _ in range(4)]
        assert blob and hits[5] >= 5 and hits[6] >= 5 and hits[7] > 0
        if len(links) == 4:
            assert hits[3] > 0
        for link in links:
            link.detach()
        before = hits[5]
        os.getppid()
        assert hits[5] == before


CORE_PROG = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* Local views with made-up layouts: only CO-RE makes these reads right on the running kernel. */
struct task_struct {
    char pad[3];
    int pid;
    int tgid;
    struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct task_struct___fake {
    int no_such_field_here;
} __attribute__((preserve_access_index));

struct no_such_struct_in_kernel { int x; };

enum pid_type { PIDTYPE_TGID = 7, PIDTYPE_PID = 9 };

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8); __type(key, __u32); __type(value, __s64); }
    out SEC(".maps");
const volatile __u32 me = 0;

static void put(__u32 k, __s64 v) { bpf_map_update_elem(&out, &k, &v, BPF_ANY); }

SEC("tracepoint/syscalls/sys_enter_getppid")
int core_facts(void *ctx)
{
    struct task_struct *t = (void *)bpf_get_current_task();
    struct task_struct___fake *f = (void *)t;

    if ((bpf_get_current_pid_tgid() >> 32) != me)
        return 0;
    put(0, BPF_CORE_READ(t, real_parent, tgid));
    put(1, BPF_CORE_READ(t, tgid));
    put(2, bpf_core_field_size(t->pid));
    put(3, bpf_core_field_exists(f->no_such_field_here));
    put(4, bpf_core_type_exists(struct no_such_struct_in_kernel));
    put(5, bpf_core_type_exists(struct task_struct));
    put(6, bpf_core_enum_value(enum pid_type, PIDTYPE_TGID));
    put(7, bpf_core_enum_value_exists(enum pid_type, PIDTYPE_PID));
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_core_relocations_against_the_kernel_btf(linux, tmp_path):
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.fail("this kernel publishes no BTF")
    from loader.btf_values import BtfTypes

    vmlinux = BtfTypes(Path("/sys/kernel/btf/vmlinux").read_bytes())
    pid_type = next(t for t in vmlinux.types if t is not None and t.name == "pid_type" and t.enumerators)
    obj = clang_bpf(tmp_path, "core", CORE_PROG)
    with EbpfLoader(kernel=linux).set_global("me", os.getpid()).load_file(obj) as ebpf:
        prog = ebpf.program("core_facts")
        prog.load()
        with prog.attach():
            os.getppid()
        out = ebpf.map("out")
        facts = [out[i] for i in range(8)]
    assert facts[0] == os.getppid() and facts[1] == os.getpid()
    assert facts[2:6] == [4, 0, 0, 1]
    assert facts[6] == dict(pid_type.enumerators)["PIDTYPE_TGID"] and facts[7] == 1


def test_aya_log_records_on_the_real_kernel(linux, tmp_path):
    import logging

    from loader.aya_log import EbpfLogger

    with Ebpf.load_file(EXAMPLES / "aya_log.bpf.o", kernel=linux) as ebpf:
        prog = ebpf.program("aya_log_openat")
        prog.load()
        logger = EbpfLogger(ebpf, logging.getLogger("test.aya_log"), page_count=32)
        with prog.attach("syscalls", "sys_enter_openat"):
            fd = os.open(tmp_path / "made", os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        mine = [r for r in logger.read() if r.message.startswith(f"pid {os.getpid()} ")]
        assert [r.level_name for r in mine] == ["DEBUG", "WARN"]
        flags = os.O_CREAT | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
        assert mine[0].message in {f"pid {os.getpid()} openat flags {f:x}" for f in (flags, flags | 0o100000)}
        assert mine[1].message == f"pid {os.getpid()} opens with O_CREAT"
        logger.close()


class OldRelease:
    """This machine's kernel, claiming an old release: the loader must take the tracefs paths."""

    def __init__(self, inner, release: str = "5.3.0") -> None:
        self.inner = inner
        self.kind = inner.kind
        self.release = release

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def uname(self):
        return self.inner.uname()._replace(release=self.release)


def test_legacy_uprobe_path_through_uprobe_events(linux, tmp_path):
    (tmp_path / "target.c").write_text(UPROBE_TARGET)
    binary = tmp_path / "target"
    subprocess.run([shutil.which("cc") or "clang", "-O1", "-o", str(binary), str(tmp_path / "target.c")], check=True)
    obj = clang_bpf(tmp_path, "up", UPROBE_PROG)
    old = OldRelease(linux)
    assert kernel_version(old) < (5, 4, 0)
    with Ebpf.load_file(obj, kernel=old) as ebpf:
        entry = ebpf.program("on_call")
        entry.load()
        link = entry.attach(str(binary), "bpfload_target")
        assert link.attach_mode == "ioctl" and link.probe_event is not None
        events = Path(TRACEFS, "uprobe_events").read_text()
        assert f"p:uprobes/{link.probe_event.name} {binary}:" in events
        subprocess.run([str(binary), "5"], capture_output=True, check=True)
        assert dict(HashMap(ebpf.map("args")).items()) == {i: 1 for i in range(5)}
        link.detach()
        assert link.probe_event.name not in Path(TRACEFS, "uprobe_events").read_text()


TC_PROG = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); }
    seen SEC(".maps");
SEC("tc")
int count_ingress(struct __sk_buff *skb)
{
    __u32 k = 0;
    __u64 *v = bpf_map_lookup_elem(&seen, &k);
    if (v)
        __sync_fetch_and_add(v, skb->len);
    return 0; /* TCX_PASS */
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_tc_classifier_as_a_tcx_link(linux, tmp_path):
    import socket

    obj = clang_bpf(tmp_path, "tc", TC_PROG)
    with Ebpf.load_file(obj, kernel=linux) as ebpf:
        prog = ebpf.program("count_ingress")
        prog.load()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        with prog.attach("lo", "ingress") as link:
            assert link.fd >= 0
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"y" * 300, rx.getsockname())
            assert rx.recv(400) == b"y" * 300  # passed on
        assert ebpf.map("seen")[0] >= 300
        rx.close()


BTF_PROG = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); }
    getppids SEC(".maps");
const volatile __u32 me = 0;
const volatile __s64 nr = -1;   /* getpid's number on this arch, set before load */

SEC("tp_btf/sys_enter")
int on_enter(__u64 *ctx)   /* (struct pt_regs *regs, long id) */
{
    __u32 k = 0;
    __u64 *v;

    if ((bpf_get_current_pid_tgid() >> 32) != me || (__s64)ctx[1] != nr)
        return 0;
    v = bpf_map_lookup_elem(&getppids, &k);
    if (v)
        __sync_fetch_and_add(v, 1);
    return 0;
}

SEC("fentry/do_unlinkat")
int on_unlink(__u64 *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


def test_btf_tracepoint_resolved_in_the_kernel_btf(linux, tmp_path):
    from kernel_sim.syscall_table import syscalls_of
    from loader.errors import ProgramError
    from loader.programs import BtfTracePoint, FEntry

    obj = clang_bpf(tmp_path, "btf", BTF_PROG)
    getpid = syscalls_of(ARCH)["getpid"]
    with EbpfLoader(kernel=linux).set_global("me", os.getpid()).set_global("nr", getpid).load_file(obj) as ebpf:
        prog = ebpf.program("on_enter")
        assert isinstance(prog, BtfTracePoint)
        prog.load()
        assert prog.info().attach_btf_id == prog.attach_btf_id > 0
        with prog.attach():
            for _ in range(4):
                os.getpid()  # glibc does not cache it: four syscalls
        os.getpid()
        assert ebpf.map("getppids")[0] == 4
        fentry = ebpf.program("on_unlink")
        assert isinstance(fentry, FEntry)
        try:  # this machine's kernel has no trampolines for fentry: it must say so clearly
            fentry.load()
            fentry.attach().detach()
        except (ProgramError, OSError) as e:
            assert "on_unlink" in str(e)


BITFIELD_PROG = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* A local struct whose bitfields sit elsewhere than in the kernel's: CO-RE must move them. */
struct tcphdr {
    __u32 pad[5];
    __u16 source;
    __u16 res1:4, doff:4, fin:1, syn:1, rst:1, psh:1, ack:1, urg:1, ece:1, cwr:1;   /* byte 22 here, 12 in Linux */
} __attribute__((preserve_access_index));

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 3); __type(key, __u32); __type(value, __u64); }
    out SEC(".maps");

SEC("raw_tp/sys_enter")
int bits(void *ctx)
{
    /* A header built on the stack in the kernel's layout (source, dest, seq, ack_seq, flags word). */
    __u8 hdr[32] = {};
    struct tcphdr *th = (void *)hdr;
    __u32 k;
    __u64 v;

    hdr[12] = 0x50;       /* doff = 5 (high nibble of byte 12), res1 = 0 */
    hdr[13] = 0x12;       /* syn (bit 1) and ack (bit 4) */
    k = 0; v = BPF_CORE_READ_BITFIELD(th, doff); bpf_map_update_elem(&out, &k, &v, BPF_ANY);
    k = 1; v = BPF_CORE_READ_BITFIELD(th, syn); bpf_map_update_elem(&out, &k, &v, BPF_ANY);
    k = 2; v = BPF_CORE_READ_BITFIELD(th, ack); bpf_map_update_elem(&out, &k, &v, BPF_ANY);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_core_bitfields_follow_the_kernel_layout(linux, tmp_path):
    obj = clang_bpf(tmp_path, "bits", BITFIELD_PROG)
    with Ebpf.load_file(obj, kernel=linux) as ebpf:
        kinds = {r.kind for r in ebpf.program("bits").definition.core_relocs}
        assert {4, 5} <= kinds  # FIELD_LSHIFT_U64 / FIELD_RSHIFT_U64 records are in play
        prog = ebpf.program("bits")
        prog.load()
        with prog.attach():
            os.getppid()
        out = ebpf.map("out")
        assert [out[0], out[1], out[2]] == [5, 1, 1]
    blind = NoKernelBtf(linux)  # the same object with its offsets as compiled reads other bytes
    with Ebpf.load_file(obj, kernel=blind) as ebpf:
        assert any("CO-RE" in w for w in ebpf.warnings)
        prog = ebpf.program("bits")
        prog.load()
        with prog.attach():
            os.getppid()
        out = ebpf.map("out")
        assert [out[0], out[1], out[2]] != [5, 1, 1]


class NoKernelBtf(OldRelease):
    """This machine's kernel with /sys/kernel/btf/vmlinux hidden."""

    def __init__(self, inner) -> None:
        super().__init__(inner, inner.uname().release)

    def openat(self, path, flags, mode=0):
        if path == "/sys/kernel/btf/vmlinux":
            raise OSError(errno.ENOENT, path)
        return self.inner.openat(path, flags, mode)
