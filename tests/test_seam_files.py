"""Files, sysfs/procfs reads and uname through the Syscalls seam, on both kernels."""

from __future__ import annotations

import errno
import os
import re

import pytest

from kernel_sim.uapi.epoll import O_DIRECTORY, O_RDONLY, O_WRONLY
from loader.backends import open_kernel


def _errno(call) -> int:
    with pytest.raises(OSError) as e:
        call()
    return e.value.errno


def _read_all(kernel, path: str) -> str:
    fd = kernel.openat(path, O_RDONLY)
    try:
        out = b""
        while chunk := kernel.read(fd, 7):  # small reads exercise the file position
            out += chunk
        return out.decode()
    finally:
        kernel.close(fd)


@pytest.fixture(params=["sim", "linux"])
def same_shape_kernel(request):
    """The simulated kernel booted with this machine's CPU count, or this machine."""
    if request.param == "linux":
        yield open_kernel("linux")
    else:
        sys = open_kernel("sim", cpus=os.cpu_count())
        yield sys
        sys.close_all()


def test_cpu_lists_match_this_machine(same_shape_kernel):
    linux = open_kernel("linux")
    for path in ("/sys/devices/system/cpu/online", "/sys/devices/system/cpu/possible"):
        text = _read_all(same_shape_kernel, path)
        assert re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*\n", text)
        assert text == _read_all(linux, path)


def test_proc_version_and_uname_agree(kernel):
    uts = kernel.uname()
    assert uts.sysname == "Linux"
    assert re.match(r"\d+\.\d+", uts.release)
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", uts.release).groups())
    assert (major, minor) >= (5, 4)
    version = _read_all(kernel, "/proc/version")
    assert version.startswith(f"Linux version {uts.release} ")
    assert version.endswith("\n")


@pytest.mark.parametrize("arch", ["x86_64", "riscv64", "loongarch64"])
def test_uname_machine_and_release_are_configurable(arch):
    sys = open_kernel("sim", arch=arch, release="4.15.0-old")
    assert sys.uname().machine == arch
    assert sys.uname().release == "4.15.0-old"
    assert _read_all(sys, "/proc/version").startswith("Linux version 4.15.0-old ")


def test_kprobe_pmu_files_as_the_seed_kernels():
    # Linux on this machine has kprobes compiled out (no kprobe PMU), so only kernel_sim is read.
    sys = open_kernel("sim", cpus=4)
    assert _read_all(sys, "/sys/bus/event_source/devices/kprobe/type") == "6\n"
    assert _read_all(sys, "/sys/bus/event_source/devices/kprobe/format/retprobe") == "config:0\n"
    assert _read_all(sys, "/sys/devices/system/cpu/online") == "0-3\n"
    assert _read_all(open_kernel("sim", cpus=1), "/sys/devices/system/cpu/possible") == "0\n"


def test_path_errors_as_linux(kernel):
    assert _errno(lambda: kernel.openat("/sys/devices/system/cpu/nonexistent", O_RDONLY)) == errno.ENOENT
    assert _errno(lambda: kernel.openat("/sys/devices/system/cpu/online/x", O_RDONLY)) == errno.ENOTDIR
    assert _errno(lambda: kernel.openat("/sys/devices/system/cpu/online", O_RDONLY | O_DIRECTORY)) == errno.ENOTDIR
    assert _errno(lambda: kernel.openat("/sys/devices/system/cpu", O_WRONLY)) == errno.EISDIR
    assert _errno(lambda: kernel.openat("/sys/devices/system/cpu/online", O_WRONLY)) == errno.EACCES
    assert _errno(lambda: kernel.openat("", O_RDONLY)) == errno.ENOENT
    d = kernel.openat("/sys/devices/system/cpu", O_RDONLY)
    assert _errno(lambda: kernel.read(d, 16)) == errno.EISDIR
    kernel.close(d)
    proc = kernel.openat("/proc/version", O_WRONLY)
    assert _errno(lambda: kernel.write(proc, b"x")) == errno.EIO
    assert _errno(lambda: kernel.read(proc, 16)) == errno.EBADF
    kernel.close(proc)


def test_bad_fds_are_ebadf(kernel):
    for call in (lambda: kernel.read(4000, 1), lambda: kernel.write(4000, b"x"), lambda: kernel.close(4000),
                 lambda: kernel.ioctl(4000, 0x2400, 0)):
        assert _errno(call) == errno.EBADF


def test_fds_are_lowest_free_first(kernel):
    a = kernel.openat("/proc/version", O_RDONLY)
    b = kernel.openat("/proc/version", O_RDONLY)
    kernel.close(a)
    c = kernel.openat("/proc/version", O_RDONLY)
    assert c == a and b != a
    for fd in (b, c):
        kernel.close(fd)


def test_ioctl_on_a_file_without_ioctls_is_enotty(kernel):
    fd = kernel.eventfd(0, 0)
    assert _errno(lambda: kernel.ioctl(fd, 0x2400, 0)) == errno.ENOTTY
