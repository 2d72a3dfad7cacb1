"""Built-in workloads stay valid however long they run: every syscall they make succeeds."""

from __future__ import annotations

import pytest

from kernel_sim.kernel import Kernel
from kernel_sim.workloads import WORKLOADS


@pytest.mark.parametrize("name", ["storm", "shell"])
def test_long_runs_make_only_successful_syscalls(name, monkeypatch):
    kernel = Kernel(cpus=1)
    failed: list[tuple[str, int]] = []
    enter = kernel.syscall

    def syscall(task, call, *args):
        ret = enter(task, call, *args)
        if ret < 0 and call in ("openat", "close", "getpid", "write", "execve"):
            failed.append((call, ret))
        return ret

    monkeypatch.setattr(kernel, "syscall", syscall)
    monkeypatch.setattr(kernel, "sleep", lambda seconds: None)  # drive the workload flat out
    steps = 4000 if name == "storm" else 300  # the storm far past the user-memory ring's wrap
    for make in WORKLOADS[name](kernel, 0):
        gen = make()
        for _ in range(steps):
            next(gen)
    if name == "shell":  # its cat of /etc/missing.conf fails on purpose, and only that
        assert set(failed) <= {("openat", -2)}
    else:
        assert failed == []
