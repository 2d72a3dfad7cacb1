"""Simulated CPUs: which CPU the calling thread is, and threads that run tasks.

A simulated CPU is an OS thread that runs its tasks' workloads step by step; the thread-local
CPU id is what bpf_get_smp_processor_id and per-CPU maps see. Code driven from a test runs on
the CPU of the task it acts for, on the test's own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_local = threading.local()


def current_cpu() -> int:
    return getattr(_local, "cpu", 0)


@contextmanager
def on_cpu(cpu: int):
    prev = getattr(_local, "cpu", 0)
    _local.cpu = cpu
    try:
        yield cpu
    finally:
        _local.cpu = prev


Step = Iterator[None]  # a task's workload: each next() makes one syscall or sleeps


class SimCpu:
    """One CPU thread running a round-robin of workload generators until stopped."""

    def __init__(self, cpu_id: int, stop: threading.Event) -> None:
        self.id = cpu_id
        self.stop = stop
        self.runqueue: list[Step] = []
        self.thread: threading.Thread | None = None
        self.steps = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"sim-cpu{self.id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with on_cpu(self.id):
            while self.runqueue and not self.stop.is_set():
                for gen in list(self.runqueue):
                    if self.stop.is_set():
                        return
                    try:
                        next(gen)
                        self.steps += 1
                        # cond_resched(): the CPUs share one GIL with userland; without a voluntary
                        # switch per step, busy CPUs can starve the reader for seconds.
                        time.sleep(0)
                    except StopIteration:
                        self.runqueue.remove(gen)
                    except Exception as e:  # a workload bug must not kill the kernel silently
                        self.error = e
                        self.runqueue.remove(gen)


class CpuSet:
    """The kernel's CPUs; ``start`` hands workloads out round-robin and runs them."""

    def __init__(self, ncpus: int) -> None:
        self.stop_event = threading.Event()
        self.cpus = [SimCpu(i, self.stop_event) for i in range(ncpus)]
        self.running = False

    def start(self, workloads: list[tuple[int, Callable[[], Step]]]) -> None:
        for cpu, make in workloads:
            self.cpus[cpu % len(self.cpus)].runqueue.append(make())
        self.stop_event.clear()
        for cpu in self.cpus:
            if cpu.runqueue:
                cpu.start()
        self.running = True

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for cpu in self.cpus:
            if cpu.thread is not None:
                cpu.thread.join(timeout)
                cpu.thread = None
            cpu.runqueue.clear()
        self.running = False

    def sleep(self, seconds: float) -> bool:
        """Sleep on a CPU thread; True if the kernel is stopping (wakes at once)."""
        return self.stop_event.wait(seconds)
