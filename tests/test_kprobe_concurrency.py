"""Probes registered and removed while simulated CPUs run a syscall storm: no oops, nothing leaked."""

from __future__ import annotations

import time

import pytest

from kernel_sim.kernel import Kernel


def _wait(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@pytest.mark.parametrize("arch", ["x86_64", "riscv64", "loongarch64"])
def test_register_and_unregister_under_a_syscall_storm(arch):
    kernel = Kernel(arch=arch, cpus=2)
    kp_sys = kernel.kprobes
    returns: list[int] = []
    kernel.start_workload("storm")
    try:
        for round_ in range(8):
            kp = kp_sys.register_kprobe("do_sys_openat2", 0, pre_handler=lambda kp, f: None)
            second = kp_sys.register_kprobe("do_sys_openat2", 0, pre_handler=lambda kp, f: None)
            rp = kp_sys.register_kretprobe("do_sys_openat2", handler=lambda ri, f: returns.append(f.return_value))
            assert _wait(lambda kp=kp, second=second, n=round_ + 1: kp.nhit >= 2 and second.nhit >= 2
                         and len(returns) >= n)
            kp_sys.unregister_kprobe(kp if round_ % 2 else second)
            kp_sys.unregister_kretprobe(rp)
            kp_sys.unregister_kprobe(second if round_ % 2 else kp)
            assert _wait(lambda rp=rp: len(rp.free) == rp.maxactive)  # every instance came back
    finally:
        kernel.shutdown()
    assert [cpu.error for cpu in kernel.cpus.cpus] == [None, None]
    assert not kp_sys.manager.points and kp_sys.hot == {}
    assert all(0 <= r < 1024 for r in returns)  # fds the storm's openat returned
