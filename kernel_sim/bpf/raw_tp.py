"""BPF_RAW_TRACEPOINT_OPEN: raw tracepoint links, as Linux 6.18's bpf_raw_tp_link_attach.

A raw tracepoint program sees the tracepoint's TP_PROTO arguments themselves, not the trace
event record: ctx is an array of u64, one per argument, and pointer arguments are kernel
addresses the program follows with bpf_probe_read_kernel (the task's pt_regs and
task_struct regions of kernel_sim/task_kmem.py, a linux_binprm mapped for the firing).

The rules are Linux's (measured on 6.18 with raw bpf()): attr bytes after ``cookie`` must be
zero (EINVAL); the program fd must be a program (EBADF / EINVAL); only RAW_TRACEPOINT and
RAW_TRACEPOINT_WRITABLE programs take a name (other types: EINVAL before the name is read);
the name is copied from user memory into a 128-byte buffer (EFAULT, NULL included) and an
unknown name is ENOENT; tp_btf programs (TRACING, BPF_TRACE_RAW_TP) named their tracepoint at
load (attach_btf_id -> typedef btf_trace_<tp> in /sys/kernel/btf/vmlinux) and pass no name; a program reading ctx past the tracepoint's arguments is EINVAL. The
answer is a BPF_LINK_TYPE_RAW_TRACEPOINT link fd; closing its last reference detaches.

Firing: kernel_sim/tracing.py calls each tracepoint's ``raw_hooks`` with the values the
firing site passed to ``emit``; the spec below turns them into the argument array.
"""

from __future__ import annotations

import ctypes
import errno
import struct
import threading
from collections.abc import Callable
from ctypes import c_int32, c_uint8, c_uint32, c_uint64
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..fs.file import oserror
from ..task import current
from ..task_kmem import task_kmem
from ..uapi.bpf import BpfCmd, LinkType, ProgType, RawTracepointAttr
from ..usermem import copy_to_user, strncpy_from_user
from .links import BpfLink, BpfLinkFile
from .syscall import bpf_command, check_attr_unused_zero

if TYPE_CHECKING:
    from ..kernel import Kernel

U64 = 0xFFFFFFFFFFFFFFFF
TP_NAME_BUF = 128                 # char buf[128] in bpf_raw_tp_link_attach
COOKIE_OFF = 16                   # raw_tracepoint.cookie (Linux 6.10), after name, prog_fd and a pad
ATTR_END = COOKIE_OFF + 8
RAW_TP_TYPES = (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE)
BTF_TYPES = (ProgType.TRACING, ProgType.EXT, ProgType.LSM)
BPF_TRACE_RAW_TP = 23             # enum bpf_attach_type: tp_btf programs
BTF_KIND_TYPEDEF = 8


class LinuxBinprm(ctypes.Structure):
    """The members of struct linux_binprm a sched_process_exec program reads (filename, interp)."""

    _fields_ = [
        ("p", c_uint64),
        ("argc", c_int32),
        ("envc", c_int32),
        ("filename", c_uint64),   # const char *
        ("interp", c_uint64),     # const char *
        ("fdpath", c_uint64),     # const char *
    ]


POINTERS = {LinuxBinprm: {"filename": "char", "interp": "char", "fdpath": "char"}}


class RawTpLinkInfo(ctypes.Structure):
    """struct bpf_link_info (64 bytes on Linux 6.18) seen through its raw_tracepoint member."""

    _fields_ = [
        ("type", c_uint32), ("id", c_uint32), ("prog_id", c_uint32), ("attach_type", c_uint32),
        ("tp_name", c_uint64), ("tp_name_len", c_uint32), ("_pad", c_uint32), ("cookie", c_uint64),
        ("_rest", c_uint8 * 24),
    ]


# -- the raw tracepoints and how each turns an emit() into its TP_PROTO arguments ---------------------
Builder = Callable[["Kernel", dict], tuple[list[int], list[int]]]  # -> (args, temporary regions)


@dataclass(frozen=True)
class RawTpSpec:
    name: str                       # the raw tracepoint's name ("sys_enter")
    key: str                        # the trace event fired at the same site ("raw_syscalls/sys_enter")
    params: tuple[tuple[str, str], ...]  # TP_PROTO: (C type, name), for docs and the kernel BTF
    build: Builder

    @property
    def nargs(self) -> int:
        return len(self.params)


def _sys_enter(kernel: Kernel, values: dict) -> tuple[list[int], list[int]]:
    task, nr = current(), values.get("id", 0)
    raw = bytes(values.get("args", b""))
    args = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, min(len(raw), 48), 8)]
    regs = task_kmem(kernel).set_syscall_regs(task, nr, args) if task is not None else 0
    return [regs, nr], []


def _sys_exit(kernel: Kernel, values: dict) -> tuple[list[int], list[int]]:
    task, nr, ret = current(), values.get("id", 0), values.get("ret", 0)
    regs = task_kmem(kernel).set_syscall_ret(task, nr, ret) if task is not None else 0
    return [regs, ret], []


def _task_addr(kernel: Kernel, task) -> int:
    return task_kmem(kernel).task_addr(task) if task is not None else 0


def _sched_process_exec(kernel: Kernel, values: dict) -> tuple[list[int], list[int]]:
    """(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm): bprm is mapped for this firing."""
    filename = bytes(values.get("filename", b"")) + b"\0"
    buf = bytearray(ctypes.sizeof(LinuxBinprm) + len(filename))
    base = kernel.vm.map_region(buf)
    name_addr = base + ctypes.sizeof(LinuxBinprm)
    bprm = LinuxBinprm.from_buffer(buf)
    bprm.filename = bprm.interp = name_addr
    buf[ctypes.sizeof(LinuxBinprm):] = filename
    return [_task_addr(kernel, current()), values.get("old_pid", 0), base], [base]


def _sched_process_exit(kernel: Kernel, values: dict) -> tuple[list[int], list[int]]:
    return [_task_addr(kernel, current()), int(values.get("group_dead", 1))], []


def _sched_switch(kernel: Kernel, values: dict) -> tuple[list[int], list[int]]:
    """(bool preempt, prev, next, unsigned int prev_state): tasks given as prev_task/next_task or by pid."""
    def task(which: str):
        t = values.get(f"{which}_task")
        return t if t is not None else kernel.tasks.get(values.get(f"{which}_pid", -1))

    return [int(values.get("preempt", 0)), _task_addr(kernel, task("prev")), _task_addr(kernel, task("next")),
            values.get("prev_state", 0)], []


RAW_TRACEPOINTS: dict[str, RawTpSpec] = {spec.name: spec for spec in (
    RawTpSpec("sys_enter", "raw_syscalls/sys_enter", (("struct pt_regs *", "regs"), ("long", "id")), _sys_enter),
    RawTpSpec("sys_exit", "raw_syscalls/sys_exit", (("struct pt_regs *", "regs"), ("long", "ret")), _sys_exit),
    RawTpSpec("sched_process_exec", "sched/sched_process_exec",
              (("struct task_struct *", "p"), ("pid_t", "old_pid"), ("struct linux_binprm *", "bprm")),
              _sched_process_exec),
    RawTpSpec("sched_process_exit", "sched/sched_process_exit",
              (("struct task_struct *", "p"), ("bool", "group_dead")), _sched_process_exit),
    RawTpSpec("sched_switch", "sched/sched_switch",
              (("bool", "preempt"), ("struct task_struct *", "prev"), ("struct task_struct *", "next"),
               ("unsigned int", "prev_state")), _sched_switch),
)}


class RawTracepoint:
    """One raw tracepoint of one kernel: its links, hooked into the tracepoint while it has any."""

    def __init__(self, kernel: Kernel, spec: RawTpSpec, tp) -> None:
        self.kernel = kernel
        self.spec = spec
        self.tp = tp
        self.links: list[RawTpLink] = []
        self._lock = threading.Lock()

    def add(self, link: RawTpLink) -> None:
        with self._lock:
            self.links.append(link)
            if len(self.links) == 1:
                self.tp.raw_hooks.append(self.fire)

    def remove(self, link: RawTpLink) -> None:
        with self._lock:
            if link in self.links:
                self.links.remove(link)
            if not self.links and self.fire in self.tp.raw_hooks:
                self.tp.raw_hooks.remove(self.fire)

    def fire(self, values: dict) -> None:
        """__bpf_trace_run for each link: build the arguments once, run every program on them."""
        links = list(self.links)
        if not links:
            return
        args, temporary = self.spec.build(self.kernel, values)
        try:
            ctx = struct.pack(f"<{len(args)}Q", *(int(a) & U64 for a in args))
            for link in links:
                prog = link.prog
                if prog is not None:
                    prog.run_ctx(ctx)
        finally:
            for base in temporary:
                self.kernel.vm.unmap_region(base)


def raw_tracepoint(kernel: Kernel, name: str) -> RawTracepoint | None:
    """bpf_get_raw_tracepoint: the kernel's raw tracepoint called ``name``, or None."""
    spec = RAW_TRACEPOINTS.get(name)
    if spec is None:
        return None
    table = getattr(kernel, "_raw_tracepoints", None)
    if table is None:
        table = kernel._raw_tracepoints = {}
    rtp = table.get(name)
    if rtp is None:
        tp = kernel.tracing.by_name.get(spec.key)
        if tp is None:
            return None
        rtp = table[name] = RawTracepoint(kernel, spec, tp)
    return rtp


def btf_trace_target(kernel: Kernel, type_id: int) -> str | None:
    """The raw tracepoint a tp_btf program's attach_btf_id names: typedef btf_trace_<tp> in vmlinux BTF."""
    from ..btf_vmlinux import vmlinux_btf
    from .btf import BtfParseError, parse_btf

    types = getattr(kernel, "_vmlinux_btf_types", None)
    if types is None:
        try:
            types = kernel._vmlinux_btf_types = parse_btf(vmlinux_btf(kernel), [])
        except BtfParseError:
            return None
    if not 1 <= type_id <= len(types):
        return None
    kind, name, _ = types[type_id - 1]
    if kind != BTF_KIND_TYPEDEF or not name.startswith("btf_trace_"):
        return None
    return name[len("btf_trace_"):]


class RawTpLink(BpfLink):
    """BPF_LINK_TYPE_RAW_TRACEPOINT: holds a program reference while attached."""

    def __init__(self, kernel: Kernel, prog, rtp: RawTracepoint, cookie: int) -> None:
        super().__init__(kernel, LinkType.RAW_TRACEPOINT, prog, None)
        self.rtp = rtp
        self.cookie = cookie
        self.attached = True
        prog.refs += 1
        rtp.add(self)

    def release_target(self) -> None:
        """The link's last reference went: unregister the probe and drop the program."""
        if not self.attached:
            return
        self.attached = False
        self.rtp.remove(self)
        self.prog.refs -= 1
        if self.prog.refs == 0:
            self.prog.release()

    def open_file(self, flags: int = 0) -> RawTpLinkFile:
        return RawTpLinkFile(self)


class RawTpLinkFile(BpfLinkFile):
    info_type = RawTpLinkInfo

    def bpf_info(self, user: RawTpLinkInfo) -> RawTpLinkInfo:
        """bpf_raw_tp_link_fill_link_info: the name's length always, its bytes if a buffer is given."""
        link: RawTpLink = self.link  # type: ignore[assignment]
        ubuf, ulen = user.tp_name, user.tp_name_len
        if (not ubuf) != (not ulen):
            raise oserror(errno.EINVAL)
        name = link.rtp.spec.name.encode()
        if ubuf:
            if len(name) < ulen:
                copy_to_user(ubuf, name + b"\0")
            else:
                copy_to_user(ubuf, name[:ulen - 1] + b"\0")
                raise oserror(errno.ENOSPC)
        info = RawTpLinkInfo.from_buffer_copy(bytes(user))
        info.type, info.id, info.prog_id = link.type, link.id, link.prog.id
        info.tp_name_len = len(name) + 1
        info.cookie = link.cookie
        return info


@bpf_command(BpfCmd.RAW_TRACEPOINT_OPEN)
def raw_tracepoint_open(kernel: Kernel, attr: memoryview) -> int:
    check_attr_unused_zero(attr, ATTR_END)
    a = RawTracepointAttr.from_attr(attr)
    cookie = int.from_bytes(bytes(attr[COOKIE_OFF:ATTR_END]).ljust(8, b"\0"), "little")
    task = current()
    prog_file = task.files.get(a.prog_fd)  # EBADF for a bad fd
    if not getattr(prog_file, "is_bpf_prog", False):
        raise oserror(errno.EINVAL)
    prog = prog_file.prog
    if prog.prog_type in BTF_TYPES:
        # The target was named by attach_btf_id at load; a name here is refused. tp_btf programs
        # take the raw tracepoint path; fentry/fexit/lsm trampolines are not modelled (EINVAL).
        if a.name or prog.meta.expected_attach_type != BPF_TRACE_RAW_TP:
            raise oserror(errno.EINVAL)
        tp_name = btf_trace_target(kernel, prog.meta.attach_btf_id)
        if tp_name is None:
            raise oserror(errno.EINVAL)
    elif prog.prog_type in RAW_TP_TYPES:
        try:
            raw_name = strncpy_from_user(a.name, TP_NAME_BUF - 1)
        except OSError:
            raise oserror(errno.EFAULT) from None
        tp_name = raw_name.split(b"\0", 1)[0].decode(errors="replace")
    else:
        raise oserror(errno.EINVAL)  # other program types never attach here
    rtp = raw_tracepoint(kernel, tp_name)
    if rtp is None:
        raise oserror(errno.ENOENT)
    if prog.engine.max_ctx_offset > 8 * rtp.spec.nargs:
        raise oserror(errno.EINVAL)  # bpf_probe_register: the program reads past the arguments
    link = RawTpLink(kernel, prog, rtp, cookie)
    return task.files.install(RawTpLinkFile(link))
