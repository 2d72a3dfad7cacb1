"""The simulated kernel: boot, tasks, the pseudo filesystems and the system call entry.

``Kernel`` is what loader/backends.py boots for ``open_kernel("sim")``. Subsystems (bpf,
perf, kprobes, tracing) hang off it; userland reaches it only through ``SimSyscalls``.
"""

from __future__ import annotations

import errno
import itertools
import threading
import time
from dataclasses import dataclass

from . import rootfs
from .cpus import CpuSet
from .fs.file import oserror
from .fs.vfs import Vfs
from .task import Task
from .uapi.perf import PerfType
from .user_memory import UserMemory
from .vm.memory import AddressSpace

ARCHES = {
    # arch name -> (uname machine, default kernel text base)
    "x86_64": "x86_64",
    "riscv64": "riscv64",
    "loongarch64": "loongarch64",
}
DEFAULT_RELEASE = "6.6.0-bpfload"
KPROBE_PMU_TYPE = int(PerfType.MAX)  # the seed kernels report PERF_TYPE_MAX (6)


def cpu_list(n: int) -> str:
    """Linux's CPU list format for CPUs 0..n-1: "0", "0-3"."""
    return "0" if n == 1 else f"0-{n - 1}"


@dataclass
class BootOptions:
    arch: str = "x86_64"
    cpus: int = 2
    release: str = DEFAULT_RELEASE
    hostname: str = "bpfload"


class IdAllocator:
    """Cyclic object ids from 1, as Linux's idr_alloc_cyclic for maps, programs, links, BTF."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self.objects: dict[int, object] = {}
        self._lock = threading.Lock()

    def alloc(self, obj: object) -> int:
        with self._lock:
            new_id = next(self._next)
            self.objects[new_id] = obj
            return new_id

    def remove(self, obj_id: int) -> None:
        with self._lock:
            self.objects.pop(obj_id, None)

    def next_after(self, start: int) -> int | None:
        ids = [i for i in self.objects if i > start]
        return min(ids) if ids else None


class Kernel:
    def __init__(self, arch: str = "x86_64", cpus: int = 2, release: str = DEFAULT_RELEASE,
                 hostname: str = "bpfload", engine: str = "jit") -> None:
        if arch not in ARCHES:
            raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHES)}")
        if cpus < 1:
            raise ValueError("a kernel needs at least one CPU")
        self.arch = arch
        self.ncpus = cpus
        self.release = release
        self.hostname = hostname
        self.version = "#1 SMP PREEMPT_DYNAMIC bpfload"
        self.vfs = Vfs()
        self.vm = AddressSpace()  # what BPF programs can address (kernel_sim/vm/memory.py)
        self.engine = engine  # "jit" or "interp": how loaded programs run
        self.ids = {kind: IdAllocator() for kind in ("map", "prog", "link", "btf")}
        self._pids = itertools.count(1)
        self._boot_ns = time.monotonic_ns()
        self.tasks: dict[int, Task] = {}
        self.cpus = CpuSet(cpus)
        self.init_task = self.spawn("systemd")
        self._populate_pseudo_fs()
        from .bpf import commands  # noqa: F401  (registers the bpf() command handlers)
        from .perf import PerfSubsystem

        self.perf = PerfSubsystem(self)
        from .tracing import Tracing

        self.tracing = Tracing(self)
        from .syscall_entry import SyscallEntry

        self._syscall_entry = SyscallEntry(self)
        rootfs.populate(self.vfs)
        from .kprobe import Kprobes

        # Kernel text + symbol table (two-stage link), kprobes; kcall becomes the kprobe-aware executor.
        self.kprobes = Kprobes(self)
        self.kprobes.populate_files()
        self.kcall = self.kprobes.kcall  # type: ignore[method-assign]
        self.kprobe_trace_event_hook = self.kprobes.trace_event_hook

    # -- tasks -----------------------------------------------------------------------------
    def spawn(self, comm: str, uid: int = 0, gid: int = 0, cpu: int = 0) -> Task:
        pid = next(self._pids)
        task = Task(pid=pid, tgid=pid, comm=comm, uid=uid, gid=gid, cpu=cpu % self.ncpus)
        task.memory = UserMemory()
        self.tasks[pid] = task
        return task

    # -- execution --------------------------------------------------------------------------
    def kcall(self, name: str, args: tuple, body):
        """Run kernel function ``name`` with ``args`` (register values); its semantics are body.

        Replaced by the kprobe-aware executor when the kernel has kernel text (kprobes).
        """
        return body(*args)

    def syscall(self, task: Task, name: str, *args: int) -> int:
        """Enter the kernel as ``task``: returns the value or a negative errno, as the ABI does."""
        return self._syscall_entry(task, name, *args)

    def sleep(self, seconds: float) -> None:
        self.cpus.sleep(seconds)

    def clock_ns(self) -> int:
        return time.monotonic_ns() - self._boot_ns

    def unlink(self, path: str) -> None:
        if not path.startswith("/sys/fs/bpf/"):
            raise oserror(errno.EPERM)
        self.vfs.remove(path)

    def start_workload(self, name: str) -> None:
        from .workloads import WORKLOADS

        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}: choose one of {', '.join(WORKLOADS)}")
        make = WORKLOADS[name]
        self.cpus.start([(cpu, gen) for cpu in range(self.ncpus) for gen in make(self, cpu)])

    def shutdown(self) -> None:
        self.cpus.stop()

    def exit_task(self, task: Task) -> None:
        task.files.close_all()
        self.tasks.pop(task.pid, None)

    # -- pseudo filesystems -------------------------------------------------------------------
    def _populate_pseudo_fs(self) -> None:
        vfs = self.vfs
        cpus = cpu_list(self.ncpus)
        vfs.add_file("/sys/devices/system/cpu/online", lambda: cpus + "\n")
        vfs.add_file("/sys/devices/system/cpu/possible", lambda: cpus + "\n")
        vfs.add_file("/sys/devices/system/cpu/present", lambda: cpus + "\n")
        for cpu in range(self.ncpus):
            vfs.mkdir(f"/sys/devices/system/cpu/cpu{cpu}")
        pmu = "/sys/bus/event_source/devices/kprobe"
        vfs.add_file(f"{pmu}/type", lambda: f"{KPROBE_PMU_TYPE}\n")
        vfs.add_file(f"{pmu}/format/retprobe", lambda: "config:0\n")
        vfs.add_file("/sys/bus/event_source/devices/software/type", lambda: "1\n")
        vfs.add_file("/sys/bus/event_source/devices/tracepoint/type", lambda: "2\n")
        vfs.add_file(
            "/proc/version",
            lambda: f"Linux version {self.release} (bpfload@kernel_sim) (python) {self.version}\n",
            fs="procfs",
        )
        vfs.add_file("/proc/sys/kernel/osrelease", lambda: self.release + "\n", fs="procfs")
        vfs.add_file("/proc/sys/kernel/hostname", lambda: self.hostname + "\n", fs="procfs")
        vfs.mkdir("/sys/kernel/tracing/events")
        vfs.mkdir("/sys/fs/bpf")
        vfs.mkdir("/sys/kernel/btf")
        from .btf_vmlinux import vmlinux_btf  # the kernel's types as BTF, built at first read

        vfs.add_file("/sys/kernel/btf/vmlinux", lambda: vmlinux_btf(self))

    # -- userland's entry -----------------------------------------------------------------
    def syscalls(self, task: Task | None = None, comm: str = "bpfload"):
        """The Syscalls object of a (new) userland process."""
        from .syscalls import SimSyscalls

        return SimSyscalls(self, task or self.spawn(comm))
