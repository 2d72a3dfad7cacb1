"""A task's kernel memory that BPF programs can read: struct task_struct, its cred, its user pt_regs.

Why: Linux hands tracing programs kernel pointers (bpf_get_current_task, a raw tracepoint's
``struct pt_regs *regs`` or ``struct task_struct *p``) and programs follow them with
bpf_probe_read_kernel / BPF_CORE_READ. kernel_sim's tasks are Python objects, so each task
gets one VM region (kernel_sim/vm/memory.py) laid out as the C structs below, refreshed from
the Task before a program can see it. The layouts are this kernel's own (a subset of Linux's
members, in Linux's order); programs find the offsets through /sys/kernel/btf/vmlinux
(kernel_sim/btf_vmlinux.py builds it from these same ctypes classes), as CO-RE does on Linux.

One region per task: [task_struct][cred][pt_regs]; the pt_regs sits where Linux keeps
task_pt_regs(task) (the user registers saved at kernel entry) and holds the registers of the
task's last traced system call entry. The region is unmapped when the Task is collected.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from ctypes import c_char, c_int32, c_int64, c_uint32, c_uint64
from typing import TYPE_CHECKING

from .uapi.ptrace import PARM_REGS, PT_REGS, RC_REG, SYSCALL_NR_REG

if TYPE_CHECKING:
    from .kernel import Kernel
    from .task import Task

TASK_COMM_LEN = 16
TASK_RUNNING = 0


class KUid(ctypes.Structure):
    """kuid_t / kgid_t: typedef struct { uid_t val; }."""

    _fields_ = [("val", c_uint32)]


class AtomicLong(ctypes.Structure):
    """atomic_long_t: struct { s64 counter; }."""

    _fields_ = [("counter", c_int64)]


class Cred(ctypes.Structure):
    _fields_ = [
        ("usage", AtomicLong),
        ("uid", KUid), ("gid", KUid), ("suid", KUid), ("sgid", KUid),
        ("euid", KUid), ("egid", KUid), ("fsuid", KUid), ("fsgid", KUid),
    ]


class TaskStruct(ctypes.Structure):
    """The members of struct task_struct this kernel models (Linux's names and C types)."""

    _fields_ = [
        ("__state", c_uint32),
        ("flags", c_uint32),
        ("on_cpu", c_int32),
        ("recent_used_cpu", c_int32),
        ("prio", c_int32),
        ("static_prio", c_int32),
        ("normal_prio", c_int32),
        ("exit_state", c_int32),
        ("exit_code", c_int32),
        ("exit_signal", c_int32),
        ("pid", c_int32),
        ("tgid", c_int32),
        ("real_parent", c_uint64),   # struct task_struct *
        ("parent", c_uint64),        # struct task_struct *
        ("group_leader", c_uint64),  # struct task_struct *
        ("start_time", c_uint64),
        ("real_cred", c_uint64),     # const struct cred *
        ("cred", c_uint64),          # const struct cred *
        ("comm", c_char * TASK_COMM_LEN),
    ]


# Pointer members (ctypes sees u64): what they point to, for the BTF.
POINTERS: dict[type, dict[str, str]] = {
    TaskStruct: {"real_parent": "task_struct", "parent": "task_struct", "group_leader": "task_struct",
                 "real_cred": "cred", "cred": "cred"},
}
# Members whose C type is a typedef of an int (the BTF names them so).
TYPEDEFS: dict[type, dict[str, str]] = {TaskStruct: {"pid": "pid_t", "tgid": "pid_t"}}

CRED_OFF = ctypes.sizeof(TaskStruct)
REGS_OFF = (CRED_OFF + ctypes.sizeof(Cred) + 15) & ~15
DEFAULT_PRIO = 120  # MAX_RT_PRIO + NICE_WIDTH / 2


class TaskKmem:
    """One kernel's task_struct regions: mapped on first use, refreshed on each use."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.arch = kernel.arch
        self.regs_type = PT_REGS[self.arch]
        self.size = REGS_OFF + ctypes.sizeof(self.regs_type)
        self._lock = threading.Lock()
        self._bases: weakref.WeakKeyDictionary[Task, tuple[int, bytearray]] = weakref.WeakKeyDictionary()

    def _region(self, task: Task) -> tuple[int, bytearray]:
        got = self._bases.get(task)
        if got is None:
            with self._lock:
                got = self._bases.get(task)
                if got is None:
                    buf = bytearray(self.size)
                    base = self.kernel.vm.map_region(buf)
                    weakref.finalize(task, self.kernel.vm.unmap_region, base)
                    got = self._bases[task] = (base, buf)
        return got

    def task_addr(self, task: Task) -> int:
        """The address of ``task``'s struct task_struct, with its members brought up to date."""
        base, buf = self._region(task)
        self._refresh(task, base, buf)
        return base

    def regs_addr(self, task: Task) -> int:
        """task_pt_regs(task): the address of its saved user registers."""
        return self._region(task)[0] + REGS_OFF

    def regs(self, task: Task):
        """The task's pt_regs as a ctypes struct over its region (writes go to the region)."""
        return self.regs_type.from_buffer(self._region(task)[1], REGS_OFF)

    def set_syscall_regs(self, task: Task, nr: int, args: tuple[int, ...] | list[int]) -> int:
        """Record a system call entry in the task's pt_regs (the arch's argument and number registers)."""
        regs = self.regs(task)
        ctypes.memset(ctypes.addressof(regs), 0, ctypes.sizeof(regs))
        names = list(PARM_REGS[self.arch][:6])
        if self.arch == "x86_64":
            names[3] = "r10"  # the syscall ABI passes the 4th argument in r10, not rcx
            regs.rax = -38 & 0xFFFFFFFFFFFFFFFF  # -ENOSYS until the call returns
        for reg, value in zip(names, args, strict=False):
            setattr(regs, reg, value & 0xFFFFFFFFFFFFFFFF)
        setattr(regs, SYSCALL_NR_REG[self.arch], nr & 0xFFFFFFFFFFFFFFFF)
        if self.arch != "x86_64":
            regs.orig_a0 = (args[0] if args else 0) & 0xFFFFFFFFFFFFFFFF
        return self.regs_addr(task)

    def set_syscall_ret(self, task: Task, nr: int, ret: int) -> int:
        regs = self.regs(task)
        setattr(regs, RC_REG[self.arch], ret & 0xFFFFFFFFFFFFFFFF)
        if self.arch == "x86_64":
            regs.orig_rax = nr & 0xFFFFFFFFFFFFFFFF
        return self.regs_addr(task)

    def _refresh(self, task: Task, base: int, buf: bytearray) -> None:
        ts = TaskStruct.from_buffer(buf, 0)
        ts.pid = task.pid
        ts.tgid = task.tgid
        comm = TaskStruct.comm.offset
        buf[comm:comm + TASK_COMM_LEN] = task.comm_bytes  # NUL-padded, as __set_task_comm's strscpy_pad
        setattr(ts, "__state", TASK_RUNNING)
        ts.on_cpu = 1
        ts.recent_used_cpu = task.cpu
        ts.prio = ts.static_prio = ts.normal_prio = DEFAULT_PRIO
        ts.exit_signal = 17  # SIGCHLD
        parent = self._parent_of(task)
        parent_addr = base if parent is task else self.task_addr(parent)  # ancestors end at init
        ts.real_parent = ts.parent = parent_addr
        leader = self.kernel.tasks.get(task.tgid, task)
        ts.group_leader = base if leader is task else self._region(leader)[0]
        ts.start_time = task.state.get("start_time_ns", 0)
        ts.real_cred = ts.cred = base + CRED_OFF
        cred = Cred.from_buffer(buf, CRED_OFF)
        cred.usage.counter = 1
        for name in ("uid", "suid", "euid", "fsuid"):
            getattr(cred, name).val = task.uid
        for name in ("gid", "sgid", "egid", "fsgid"):
            getattr(cred, name).val = task.gid

    def _parent_of(self, task: Task) -> Task:
        """The parent the kernel recorded (state["parent"]), else init; init is its own parent here."""
        parent = task.state.get("parent")
        if parent is None:
            parent = getattr(self.kernel, "init_task", None) or task
        return parent


def task_kmem(kernel: Kernel) -> TaskKmem:
    """The kernel's TaskKmem, made on first use (no boot-time cost for kernels that never trace)."""
    kmem = getattr(kernel, "_task_kmem", None)
    if kmem is None:
        kmem = kernel._task_kmem = TaskKmem(kernel)
    return kmem


def task_struct_addr(kernel: Kernel, task: Task | None) -> int:
    """bpf_get_current_task's answer: the task's struct task_struct address (0 without a task)."""
    return task_kmem(kernel).task_addr(task) if task is not None else 0
