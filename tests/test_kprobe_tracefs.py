"""The legacy kprobe path (Aya on old kernels): kprobe_events, events/kprobes/NAME/id, a tracepoint event."""

from __future__ import annotations

import ctypes
import errno

import pytest

from kernel_sim.uapi.epoll import O_RDONLY, O_WRONLY
from kernel_sim.uapi.perf import PERF_EVENT_IOC_ENABLE, PerfEventAttr, PerfType
from kernel_sim.uapi.ptrace import PARM_REGS, PT_REGS, RC_REG
from kernel_sim.usermem import strncpy_from_user
from loader.backends import open_kernel
from loader.kernel_info import read_file
from tests.test_kprobe_perf import attach_stub

TRACEFS = "/sys/kernel/tracing"
ARCHES = ["x86_64", "riscv64", "loongarch64"]


@pytest.fixture(params=ARCHES)
def sys(request):
    s = open_kernel("sim", arch=request.param)
    yield s
    s.close_all()


def define(sys, line: bytes) -> None:
    fd = sys.openat(f"{TRACEFS}/kprobe_events", O_WRONLY)
    try:
        sys.write(fd, line)
    finally:
        sys.close(fd)


def open_trace_event(sys, name: str) -> int:
    ident = int(read_file(sys, f"{TRACEFS}/events/kprobes/{name}/id"))
    attr = PerfEventAttr(type=PerfType.TRACEPOINT, size=ctypes.sizeof(PerfEventAttr), config=ident,
                         sample_period=1, wakeup_events=1)
    return sys.perf_event_open(bytearray(bytes(attr)), -1, 0, -1, 0)


def test_kprobe_event_fires_through_a_real_kprobe(sys):
    kernel = sys.kernel
    define(sys, b"p:kprobes/myopen do_sys_openat2\n")
    assert kernel.kprobes.hot == {}  # defined, not armed until a perf event uses it
    fd = open_trace_event(sys, "myopen")
    assert "do_sys_openat2" in kernel.kprobes.hot
    prog = attach_stub(sys, fd)
    sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    log = kernel.kprobes.record_traps()
    sys.openat("/proc/version", O_RDONLY)
    assert len(prog.ctxs) == 1
    regs = PT_REGS[kernel.arch].from_buffer_copy(prog.ctxs[0])
    assert strncpy_from_user(getattr(regs, PARM_REGS[kernel.arch][1]), 64) == b"/proc/version"
    assert log[0] == ("break", kernel.kprobes.table.lookup_name("do_sys_openat2"))
    sys.close(fd)
    assert kernel.kprobes.hot == {} and not kernel.kprobes.manager.points
    define(sys, b"-:kprobes/myopen\n")


def test_kretprobe_event_sees_the_return_value(sys):
    kernel = sys.kernel
    define(sys, b"r:kprobes/myret do_sys_openat2\n")
    fd = open_trace_event(sys, "myret")
    prog = attach_stub(sys, fd)
    sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    got = sys.openat("/proc/version", O_RDONLY)
    assert [getattr(PT_REGS[kernel.arch].from_buffer_copy(c), RC_REG[kernel.arch]) for c in prog.ctxs] == [got]


def test_removing_a_used_event_is_ebusy(sys):
    define(sys, b"p:kprobes/busy vfs_read\n")
    fd = open_trace_event(sys, "busy")
    with pytest.raises(OSError) as e:
        define(sys, b"-:kprobes/busy\n")
    assert e.value.errno == errno.EBUSY
    sys.close(fd)
    define(sys, b"-:kprobes/busy\n")
    assert sys.kernel.kprobes.hot == {}


@pytest.mark.parametrize("line, code", [
    (b"p:kprobes/e1 no_such_function\n", errno.ENOENT),
    (b"p:kprobes/e2 arch_rethook_trampoline\n", errno.EINVAL),
])
def test_definition_errors_as_linux(sys, line, code):
    with pytest.raises(OSError) as e:
        define(sys, line)
    assert e.value.errno == code


def test_offset_inside_an_instruction_is_eilseq(sys):
    inside = {"x86_64": 2, "riscv64": 1, "loongarch64": 2}[sys.kernel.arch]
    with pytest.raises(OSError) as e:
        define(sys, b"p:kprobes/e3 do_sys_openat2+%d\n" % inside)
    assert e.value.errno == errno.EILSEQ
    define(sys, b"p:kprobes/ok do_sys_openat2+%d\n" % {"x86_64": 1, "riscv64": 2, "loongarch64": 4}[sys.kernel.arch])


def test_kprobe_profile_counts_hits(sys):
    define(sys, b"p:kprobes/prof do_sys_openat2\n")
    fd = open_trace_event(sys, "prof")
    for _ in range(3):
        sys.close(sys.openat("/proc/version", O_RDONLY))
    lines = read_file(sys, f"{TRACEFS}/kprobe_profile").splitlines()
    # 3 opens, and the one that opened kprobe_profile to read this
    assert lines == [f"  {'prof':<44} {4:>15} {0:>15}"]
    sys.close(fd)
