"""The kprobe PMU through the Syscalls seam: perf_event_open by name and offset, SET_BPF, ENABLE, close.

The program here is a stub BpfProg (it records the ctx it is run on), so these tests pin the
PMU's contract independently of the VM; test_kprobe_bpf.py runs real programs end to end.
"""

from __future__ import annotations

import ctypes
import errno

import pytest

from kernel_sim.fs.file import File
from kernel_sim.uapi.bpf import ProgType
from kernel_sim.uapi.epoll import O_RDONLY
from kernel_sim.uapi.perf import (
    ATTR_FLAG_DISABLED,
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PerfEventAttr,
)
from kernel_sim.uapi.ptrace import PARM_REGS, PT_REGS, RC_REG, SP_REG
from kernel_sim.usermem import strncpy_from_user
from loader.backends import open_kernel
from loader.kernel_info import read_file

ARCHES = ["x86_64", "riscv64", "loongarch64"]


class StubProg:
    def __init__(self, prog_type: int = ProgType.KPROBE) -> None:
        self.prog_type = prog_type
        self.refs = 0
        self.ctxs: list[bytes] = []

    def run_ctx(self, ctx) -> int:
        self.ctxs.append(bytes(ctx))
        return 0


class StubProgFile(File):
    is_bpf_prog = True

    def __init__(self, prog: StubProg) -> None:
        super().__init__()
        self.prog = prog


@pytest.fixture(params=ARCHES)
def sys(request):
    s = open_kernel("sim", arch=request.param)
    yield s
    s.close_all()


def kprobe_type(sys) -> int:
    return int(read_file(sys, "/sys/bus/event_source/devices/kprobe/type"))


def kprobe_attr(sys, name: bytes | None, offset: int = 0, retprobe: bool = False, keep: list | None = None):
    """A perf_event_attr for the kprobe PMU; the name buffer must outlive the call (keep)."""
    ptr = 0
    if name is not None:
        buf = ctypes.create_string_buffer(name)
        if keep is not None:
            keep.append(buf)
        ptr = ctypes.addressof(buf)
    attr = PerfEventAttr(type=kprobe_type(sys), size=ctypes.sizeof(PerfEventAttr), config=int(retprobe),
                         config1=ptr, config2=offset, sample_period=1, wakeup_events=1,
                         flags=ATTR_FLAG_DISABLED)
    return bytearray(bytes(attr))


def open_probe(sys, name: bytes | None, offset: int = 0, retprobe: bool = False) -> int:
    keep: list = []
    return sys.perf_event_open(kprobe_attr(sys, name, offset, retprobe, keep), -1, 0, -1, 0)


def attach_stub(sys, fd: int, prog: StubProg | None = None) -> StubProg:
    prog = prog or StubProg()
    prog_fd = sys.task.files.install(StubProgFile(prog))
    sys.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
    sys.close(prog_fd)
    return prog


def regs(sys, ctx: bytes):
    return PT_REGS[sys.kernel.arch].from_buffer_copy(ctx)


def test_kprobe_pmu_type_is_six(sys):
    assert kprobe_type(sys) == 6


def test_kprobe_on_do_sys_openat2_runs_the_program_on_pt_regs(sys):
    arch = sys.kernel.arch
    fd = open_probe(sys, b"do_sys_openat2")
    prog = attach_stub(sys, fd)
    sys.openat("/proc/version", O_RDONLY)
    assert prog.ctxs == []  # not enabled yet
    sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    sys.openat("/proc/version", O_RDONLY)
    sys.openat("/proc/kallsyms", O_RDONLY)
    assert len(prog.ctxs) == 2
    names = [strncpy_from_user(getattr(regs(sys, c), PARM_REGS[arch][1]), 64) for c in prog.ctxs]
    assert names == [b"/proc/version", b"/proc/kallsyms"]
    r = regs(sys, prog.ctxs[0])
    assert len(prog.ctxs[0]) == ctypes.sizeof(PT_REGS[arch])
    sp = getattr(r, SP_REG[arch])
    # The ctx is taken before the probed instruction runs: at a push / sp-adjusting prologue the
    # stack pointer is still the caller's (the seed ran its callback after the step instead).
    kernel = sys.kernel
    ret_addr = (kernel.kprobes.mem.read_u64(sp) if arch == "x86_64"
                else getattr(r, {"riscv64": "ra", "loongarch64": "r1"}[arch]))
    assert ret_addr == kernel.kprobes.table.lookup_name("__sim_call_return")
    sys.ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
    sys.openat("/proc/version", O_RDONLY)
    assert len(prog.ctxs) == 2
    assert prog.refs == 1
    sys.close(fd)
    assert prog.refs == 0 and sys.kernel.kprobes.hot == {}


def test_kretprobe_program_sees_the_return_value(sys):
    arch = sys.kernel.arch
    fd = open_probe(sys, b"do_sys_openat2", retprobe=True)
    prog = attach_stub(sys, fd)
    sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    got = sys.openat("/proc/version", O_RDONLY)
    with pytest.raises(OSError):
        sys.openat("/nonexistent", O_RDONLY)
    rcs = [ctypes.c_int64(getattr(regs(sys, c), RC_REG[arch])).value for c in prog.ctxs]
    assert rcs == [got, -errno.ENOENT]


def test_probe_at_an_offset_and_two_events_on_one_address(sys):
    kernel = sys.kernel
    from kernel_sim.arch import get_arch

    arch = get_arch(kernel.arch)
    sym = kernel.kprobes.ksym.symbol("vfs_read")
    second = arch.decode_all(kernel.kprobes._pristine(sym.addr, sym.size))[1][0]
    a, b = open_probe(sys, b"vfs_read", second), open_probe(sys, b"vfs_read", second)
    assert list(kernel.kprobes.manager.points) == [sym.addr + second]
    pa, pb = attach_stub(sys, a), attach_stub(sys, b)
    for fd in (a, b):
        sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    fd = sys.openat("/proc/version", O_RDONLY)
    buf = sys.task.memory.alloc(16)
    assert kernel.syscall(sys.task, "read", fd, buf, 16) == 16
    assert len(pa.ctxs) == len(pb.ctxs) == 1 and pa.ctxs == pb.ctxs
    sys.close(a)
    assert list(kernel.kprobes.manager.points) == [sym.addr + second]
    sys.close(b)
    assert not kernel.kprobes.manager.points


def test_open_errors_as_linux(sys):
    def err(**kw) -> int:
        with pytest.raises(OSError) as e:
            open_probe(sys, **kw)
        return e.value.errno

    assert err(name=b"no_such_function") == errno.ENOENT
    inside = {"x86_64": 2, "riscv64": 1, "loongarch64": 2}[sys.kernel.arch]
    assert err(name=b"do_sys_openat2", offset=inside) == errno.EILSEQ
    assert err(name=b"arch_rethook_trampoline") == errno.EINVAL
    second = 2 if sys.kernel.arch == "riscv64" else (1 if sys.kernel.arch == "x86_64" else 4)
    assert err(name=b"do_sys_openat2", offset=second, retprobe=True) == errno.EINVAL
    assert err(name=b"x" * 600) == errno.E2BIG
    assert err(name=None, offset=0) == errno.EINVAL
    bad = kprobe_attr(sys, None)
    attr = PerfEventAttr.from_buffer(bad)
    attr.config1 = 16  # an unmapped user pointer
    with pytest.raises(OSError) as e:
        sys.perf_event_open(bad, -1, 0, -1, 0)
    assert e.value.errno == errno.EFAULT


def test_probe_by_address_when_the_name_is_empty(sys):
    addr = sys.kernel.kprobes.table.lookup_name("do_sys_openat2")
    fd = open_probe(sys, b"", offset=addr)
    prog = attach_stub(sys, fd)
    sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    sys.openat("/proc/version", O_RDONLY)
    assert len(prog.ctxs) == 1


def test_set_bpf_takes_only_kprobe_programs(sys):
    fd = open_probe(sys, b"do_sys_openat2")
    with pytest.raises(OSError) as e:
        attach_stub(sys, fd, StubProg(ProgType.TRACEPOINT))
    assert e.value.errno == errno.EINVAL
    attach_stub(sys, fd)
    with pytest.raises(OSError) as e:
        attach_stub(sys, fd)
    assert e.value.errno == errno.EEXIST


def test_unprivileged_open_is_eacces():
    kernel = open_kernel("sim").kernel
    user = kernel.syscalls(kernel.spawn("user", uid=1000))
    with pytest.raises(OSError) as e:
        open_probe(user, b"do_sys_openat2")
    assert e.value.errno == errno.EACCES


def test_perf_link_attaches_and_detaches_a_kprobe_program(sys):
    from kernel_sim.uapi.bpf import AttachType, BpfCmd, LinkCreateAttr, make_attr

    fd = open_probe(sys, b"do_sys_openat2")
    sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    prog = StubProg()
    prog_fd = sys.task.files.install(StubProgFile(prog))
    link_fd = sys.bpf(BpfCmd.LINK_CREATE, make_attr(LinkCreateAttr, prog_fd=prog_fd, target_fd=fd,
                                                      attach_type=AttachType.PERF_EVENT))
    sys.openat("/proc/version", O_RDONLY)
    assert len(prog.ctxs) == 1
    sys.close(link_fd)
    sys.openat("/proc/version", O_RDONLY)
    assert len(prog.ctxs) == 1 and prog.refs == 0
