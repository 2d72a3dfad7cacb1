"""tracefs: tracepoint ids and record formats, on both kernels; kprobe_events and trace_pipe on sim."""

from __future__ import annotations

import errno
import re

import pytest

from kernel_sim.uapi.epoll import O_NONBLOCK, O_RDONLY, O_WRONLY
from loader.backends import open_kernel
from loader.kernel_info import read_file
from tests.conftest import TRACEFS, ensure_tracefs

EVENTS = ["syscalls/sys_enter_openat", "syscalls/sys_exit_openat", "raw_syscalls/sys_enter",
          "raw_syscalls/sys_exit", "sched/sched_process_exec", "syscalls/sys_enter_read"]


def linux_with_tracefs():
    """This machine's kernel, with tracefs mounted (it may not be on a fresh machine)."""
    ensure_tracefs()
    return open_kernel("linux")


@pytest.fixture(params=["sim", "linux"])
def traced_kernel(request):
    return linux_with_tracefs() if request.param == "linux" else open_kernel("sim")


def _fields(fmt: str) -> list[str]:
    return [line.strip() for line in fmt.splitlines() if line.strip().startswith("field:")]


@pytest.mark.parametrize("event", EVENTS)
def test_record_formats_match_linux(traced_kernel, event):
    fmt = read_file(traced_kernel, f"{TRACEFS}/events/{event}/format")
    ident = int(read_file(traced_kernel, f"{TRACEFS}/events/{event}/id"))
    assert f"ID: {ident}\n" in fmt
    linux_fmt = read_file(linux_with_tracefs(), f"{TRACEFS}/events/{event}/format")
    assert _fields(fmt) == _fields(linux_fmt)


def test_kprobe_events_define_and_remove():
    sys = open_kernel("sim")
    fd = sys.openat(f"{TRACEFS}/kprobe_events", O_WRONLY)
    sys.write(fd, b"p:kprobes/myprobe do_sys_openat2\n")
    ident = int(read_file(sys, f"{TRACEFS}/events/kprobes/myprobe/id"))
    assert ident > 0
    assert read_file(sys, f"{TRACEFS}/kprobe_events") == "p:kprobes/myprobe do_sys_openat2\n"
    for bad, code in ((b"p:kprobes/myprobe do_sys_openat2", errno.EEXIST), (b"garbage", errno.EINVAL),
                      (b"-:kprobes/nothere", errno.ENOENT)):
        with pytest.raises(OSError) as e:
            sys.write(fd, bad)
        assert e.value.errno == code
    sys.write(fd, b"-:kprobes/myprobe\n")
    with pytest.raises(OSError) as e:
        sys.openat(f"{TRACEFS}/events/kprobes/myprobe/id", O_RDONLY)
    assert e.value.errno == errno.ENOENT


def test_trace_pipe_streams_printk_lines():
    sys = open_kernel("sim")
    fd = sys.openat(f"{TRACEFS}/trace_pipe", O_RDONLY | O_NONBLOCK)
    with pytest.raises(OSError) as e:
        sys.read(fd, 4096)
    assert e.value.errno == errno.EAGAIN
    sys.kernel.tracing.printk("hello from bpf")
    line = sys.read(fd, 4096).decode()
    assert re.fullmatch(r"\s+\S+-\d+\s+\[\d{3}\] \S+\s+\d+\.\d{6}: bpf_trace_printk: hello from bpf\n", line)
