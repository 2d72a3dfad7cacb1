"""Shared fixtures: every syscall-level test body runs on both kernels.

``kernel`` is parametrized over "sim" (an embedded kernel_sim) and "linux" (this machine). The
linux half of a test that needs bpf() skips with the reason when bpf() is denied here.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import pytest

from kernel_sim.uapi.bpf import BpfCmd, MapCreateAttr, MapType, make_attr
from loader.backends import open_kernel

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@functools.cache
def linux_bpf_denied() -> str | None:
    """None when this machine's kernel lets us call bpf(); else the reason it does not."""
    try:
        sys = open_kernel("linux")
        attr = make_attr(MapCreateAttr, map_type=MapType.ARRAY, key_size=4, value_size=4, max_entries=1)
        fd = sys.bpf(BpfCmd.MAP_CREATE, attr)
        os.close(fd)
        return None
    except OSError as e:
        return f"bpf() denied on this machine: {e}"


TRACEFS = "/sys/kernel/tracing"


def ensure_tracefs() -> None:
    """Mount tracefs on this machine if it is not (a fresh machine may not have it mounted)."""
    import subprocess

    if subprocess.run(["mountpoint", "-q", TRACEFS]).returncode != 0:
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True)


def boot(kind: str, **options):
    if kind == "linux":
        return open_kernel("linux")
    return open_kernel("sim", **options)


@pytest.fixture(params=["sim", "linux"])
def kernel(request):
    """A Syscalls object; closes what the test left open on the simulated kernel."""
    sys = boot(request.param)
    yield sys
    sys.close_all()


@pytest.fixture(params=["sim", "linux"])
def bpf_kernel(request):
    """Like ``kernel`` but for tests that call bpf(): the linux half needs bpf() allowed."""
    if request.param == "linux":
        reason = linux_bpf_denied()
        if reason:
            pytest.skip(reason)
    sys = boot(request.param)
    yield sys
    sys.close_all()


def buf_addr(buf) -> int:
    """The address of a ctypes buffer, for pointers inside attrs."""
    return ctypes.addressof(buf)
