"""Program load/attach paths (loader/programs.py) on kernel_sim, and Aya's probe attrs byte by byte.

- kernels below PERF_PROBE_MIN_VERSION: kprobes go through tracefs kprobe_events (booting
  kernel_sim as 5.3.0) and are removed again on detach;
- newer kernels: perf_event_open on the kprobe/uprobe PMU with config1 -> the NUL-terminated
  name, config2 = offset, config = the retprobe bit; checked by recording the attr the loader
  passes (independent of which kernel implements the PMU);
- tracepoints through perf links, on both kernels.
"""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from kernel_sim.uapi.perf import PerfEventAttr
from loader.backends import open_kernel
from loader.ebpf import Ebpf
from loader.errors import AttachError, ProgramError
from loader.links import PerfLink
from loader.programs import (
    PERF_PROBE_MIN_VERSION,
    KProbe,
    RawTracePoint,
    SchedClassifier,
    SocketFilter,
    TracePoint,
    UProbe,
    kernel_version,
    parse_release,
    read_text,
    symbol_file_offset,
)
from tests.conftest import REPO, linux_bpf_denied

SECTIONS = REPO / "tests" / "objects" / "sections.bpf.o"


class Recording:
    """A Syscalls wrapper that records perf_event_open attrs and can fake some files."""

    def __init__(self, inner, files: dict[str, str | None] | None = None, fail_open: int | None = None) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.files = files or {}
        self.fail_open = fail_open
        self.opened: list[tuple[PerfEventAttr, str, int, int]] = []
        self._fake_fds: dict[int, bytes] = {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def perf_event_open(self, attr, pid, cpu, group_fd, flags):
        a = PerfEventAttr.from_attr(attr)
        target = ctypes.string_at(a.config1).decode() if a.config1 else ""
        self.opened.append((a, target, pid, cpu))
        if self.fail_open is not None:
            raise OSError(self.fail_open, os.strerror(self.fail_open))
        return self.inner.perf_event_open(attr, pid, cpu, group_fd, flags)

    def openat(self, path, flags, mode=0):
        if path in self.files:
            if self.files[path] is None:
                raise OSError(errno.ENOENT, path)
            fd = 10_000 + len(self._fake_fds)
            self._fake_fds[fd] = self.files[path].encode()
            return fd
        return self.inner.openat(path, flags, mode)

    def read(self, fd, n):
        if fd in self._fake_fds:
            data, self._fake_fds[fd] = self._fake_fds[fd][:n], self._fake_fds[fd][n:]
            return data
        return self.inner.read(fd, n)

    def close(self, fd):
        if fd in self._fake_fds:
            del self._fake_fds[fd]
            return
        self.inner.close(fd)


@pytest.fixture
def sim():
    k = open_kernel("sim")
    yield k
    k.close_all()


def test_classes_by_section(sim):
    with Ebpf.load_file(SECTIONS, kernel=sim) as ebpf:
        kinds = {name: type(p) for name, p in ebpf.programs.items()}
    assert kinds["k_unlink"] is KProbe and kinds["kr_unlink"] is KProbe
    assert kinds["u_malloc"] is UProbe and kinds["tp_switch"] is TracePoint
    assert kinds["raw_switch"] is RawTracePoint and kinds["cls"] is SchedClassifier
    assert kinds["sock"] is SocketFilter


def test_release_parsing():
    assert parse_release("6.18.44-fc-v657") == (6, 18, 44)
    assert parse_release("5.3") == (5, 3, 0)
    with pytest.raises(ProgramError):
        parse_release("linux")


def test_version_signature_wins_over_uname(sim):
    rec = Recording(sim, {"/proc/version_signature": "Ubuntu 5.4.0-42.46-generic 5.4.44\n"})
    assert kernel_version(rec) == (5, 4, 44)
    assert kernel_version(Recording(sim, {"/proc/version_signature": None})) == parse_release(sim.uname().release)


def test_attach_before_load_is_an_error(sim):
    with Ebpf.load_file(SECTIONS, kernel=sim) as ebpf:
        with pytest.raises(ProgramError, match="not loaded"):
            ebpf.program("tp_switch").attach()


@pytest.mark.parametrize("retbit_file, bit", [(None, 0), ("config:0\n", 0), ("config:5\n", 5)])
def test_kprobe_pmu_attr_as_aya_builds_it(retbit_file, bit):
    base = open_kernel("sim")
    rec = Recording(base, {"/sys/bus/event_source/devices/kprobe/type": "6\n",
                           "/sys/bus/event_source/devices/kprobe/format/retprobe": retbit_file},
                    fail_open=errno.ENOENT)
    with Ebpf.load_file(SECTIONS, kernel=rec) as ebpf:
        entry, ret = ebpf.program("k_unlink"), ebpf.program("kr_unlink")
        entry.load()
        ret.load()
        with pytest.raises(AttachError):
            entry.attach("do_unlinkat", offset=0x10)
        with pytest.raises(AttachError):
            ret.attach()
    (a1, t1, pid1, cpu1), (a2, t2, _p, _c) = rec.opened
    assert (a1.type, a1.config, a1.config2, t1, pid1, cpu1) == (6, 0, 0x10, "do_unlinkat", -1, 0)
    assert a1.size == ctypes.sizeof(PerfEventAttr)
    assert (a2.type, a2.config, a2.config2, t2) == (6, 1 << bit, 0, "do_unlinkat")
    base.close_all()


def test_uprobe_pmu_attr_has_path_and_file_offset(sim, tmp_path):
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    if not os.path.exists(libc):
        libc = os.path.realpath("/lib64/libc.so.6")
    rec = Recording(sim, {"/sys/bus/event_source/devices/uprobe/type": "8\n"}, fail_open=errno.EINVAL)
    with Ebpf.load_file(SECTIONS, kernel=rec) as ebpf:
        prog = ebpf.program("u_malloc")
        prog.load()
        with pytest.raises(AttachError):
            prog.attach(libc, "malloc", pid=1234)
        with pytest.raises(AttachError):
            prog.attach(libc, 0x1000)
    (a, target, pid, cpu), (b, target_b, _p, _c) = rec.opened
    assert (a.type, target, a.config2, pid, cpu) == (8, os.path.realpath(libc), symbol_file_offset(libc, "malloc"),
                                                     1234, -1)
    assert (b.config2, target_b) == (0x1000, os.path.realpath(libc))


def test_old_kernel_kprobes_go_through_tracefs():
    sim = open_kernel("sim", release="5.3.0")
    assert kernel_version(sim) < PERF_PROBE_MIN_VERSION
    with Ebpf.load_file(SECTIONS, kernel=sim) as ebpf:
        entry, ret = ebpf.program("k_unlink"), ebpf.program("kr_unlink")
        entry.load()
        ret.load()
        l1 = entry.attach()
        l2 = ret.attach("do_unlinkat")
        assert isinstance(l1, PerfLink) and l1.attach_mode == "ioctl" and l1.probe_event is not None
        events = read_text(sim, "/sys/kernel/tracing/kprobe_events")
        assert f"p:kprobes/{l1.probe_event.name} do_unlinkat" in events
        assert f"r:kprobes/{l2.probe_event.name} do_unlinkat" in events
        assert entry.links == [l1]
        l1.detach()
        assert l1.probe_event.name not in read_text(sim, "/sys/kernel/tracing/kprobe_events")
        assert entry.links == []
    # closing the Ebpf detached l2 and removed its event
    assert l2.detached and l2.probe_event.name not in read_text(sim, "/sys/kernel/tracing/kprobe_events")
    sim.close_all()


@pytest.fixture(params=["sim", "linux"])
def any_kernel(request):
    if request.param == "linux":
        reason = linux_bpf_denied()
        if reason:
            pytest.skip(reason)
    k = open_kernel(request.param)
    yield k
    k.close_all()


def test_tracepoint_attach_detach_both_kernels(any_kernel):
    with Ebpf.load_file(SECTIONS, kernel=any_kernel) as ebpf:
        prog = ebpf.program("tp_switch")
        prog.load()
        with prog.attach() as link:
            assert link.attach_mode == "perf_link" and link.fd >= 0
            with pytest.raises(OSError):  # one program per perf event: the link holds it
                any_kernel.ioctl(link.perf_fd, 0x40042408, prog.fd)
        assert link.detached and prog.links == []
        link2 = prog.attach("sched/sched_switch")
        assert prog.links == [link2]
        with pytest.raises(AttachError):
            prog.attach("nosuch", "tracepoint")
    assert link2.detached


def test_loaded_programs_match_on_both_kernels(any_kernel):
    with Ebpf.load_file(SECTIONS, kernel=any_kernel) as ebpf:
        for prog in ebpf.programs.values():
            prog.load()
            info = prog.info()
            assert info.type == prog.prog_type
            assert info.xlated_prog_len == 8 * prog.insn_count
            assert info.name.decode() == prog.kernel_name


class NoPerfLinks(Recording):
    """A kernel without perf links (before 5.15): LINK_CREATE with BPF_PERF_EVENT is EINVAL."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.link_creates = 0

    def bpf(self, cmd, attr):
        from kernel_sim.uapi.bpf import BpfCmd

        if cmd == BpfCmd.LINK_CREATE:
            self.link_creates += 1
            raise OSError(errno.EINVAL, "no perf links")
        return self.inner.bpf(cmd, attr)


def test_without_perf_links_ioctl_attach_is_used(any_kernel):
    k = NoPerfLinks(any_kernel)
    with Ebpf.load_file(SECTIONS, kernel=k) as ebpf:
        prog = ebpf.program("tp_switch")
        prog.load()
        first = prog.attach()
        with pytest.raises(AttachError) as e:  # the same program twice on one tracepoint: Linux's EEXIST
            prog.attach("sched", "sched_switch")
        assert e.value.errno == errno.EEXIST
        first.detach()
        second = prog.attach("sched", "sched_switch")
        assert first.attach_mode == second.attach_mode == "ioctl"
        assert k.link_creates == 1  # probed once, remembered for this kernel
        second.detach()


def test_pinned_link_outlives_its_fds(any_kernel):
    from loader.maps import Array, MapData

    aya = REPO / "tests" / "objects" / "aya_sections.bpf.o"
    path = f"/sys/fs/bpf/bpfload_link_{os.getpid()}"
    with Ebpf.load_file(aya, kernel=any_kernel) as ebpf:
        hits = Array(ebpf.map("hits"))
        prog = ebpf.program("any_tp")
        prog.load()
        link = prog.attach("syscalls", "sys_enter_openat")
        link.pin(path)
        link.detach()  # our fds are gone; the pinned link keeps the program attached
        with pytest.raises(ValueError):
            link.pin(path + "_again")
        before = hits[5]
        any_kernel.close(any_kernel.openat("/sys/devices/system/cpu/online", 0))
        assert hits[5] > before
        any_kernel.unlink(path)  # Linux frees the link after an RCU grace period: not checked here
        with pytest.raises(OSError):
            MapData.from_pin(any_kernel, path)


def test_verifier_rejection_same_on_both_kernels(bpf_kernel, tmp_path):
    """The same unsafe program: the same errno and the same verdict lines from both verifiers."""
    from loader.errors import VerifierError
    from tests.test_loader_real_kernel import BAD_PROG, clang_bpf

    obj = clang_bpf(tmp_path, "bad", BAD_PROG)
    with Ebpf.load_file(obj, kernel=bpf_kernel) as ebpf:
        prog = ebpf.program("bad")
        with pytest.raises(VerifierError) as e:
            prog.load()
    assert e.value.errno == errno.EACCES
    lines = [line.strip() for line in e.value.log.strip().splitlines()]
    assert lines[-3:-1] == ["7: (79) r0 = *(u64 *)(r0 +0)", "R0 invalid mem access 'map_value_or_null'"]
    assert lines[-1].startswith("processed 7 insns (limit 1000000)")
    assert prog.verifier_log == e.value.log and not prog.loaded
