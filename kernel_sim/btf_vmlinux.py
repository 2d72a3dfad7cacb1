"""/sys/kernel/btf/vmlinux of the simulated kernel: the types its programs touch, as BTF.

What is in it, and why each part:
- C base types and the kernel's typedefs (u32, pid_t, ...), so names resolve as in Linux;
- struct pt_regs of the arch with the kernel's member names (x86_64: di, si, ax, orig_ax, ...),
  which libbpf's CO-RE PT_REGS macros and raw tracepoint programs read;
- struct task_struct, struct cred and struct linux_binprm built from the ctypes layouts the
  kernel really uses for that memory (kernel_sim/task_kmem.py, kernel_sim/bpf/raw_tp.py), so a
  CO-RE relocation computed against this BTF reads the right bytes of bpf_get_current_task()'s
  answer;
- struct trace_entry and trace_event_raw_<event> (syscall_trace_enter/exit for syscalls/*)
  from the tracepoints' own field tables, as TRACE_EVENT generates them;
- typedef btf_trace_<tp> (pointer to a FUNC_PROTO void(void *, TP_PROTO args...)) per raw
  tracepoint and FUNC records for the kernel's functions (kernel_sim/ksym.py), which is how
  tp_btf / fentry targets are found by name.
Built once per kernel, at first read (construct-free: kernel_sim/btf_writer.py).
"""

from __future__ import annotations

import ctypes
import re
from typing import TYPE_CHECKING

from . import task_kmem
from .bpf import raw_tp
from .btf_writer import INT_BOOL, INT_SIGNED, STRUCT, UNION, BtfWriter
from .ksym import kernel_functions
from .syscall_table import ENTRY_PREFIX
from .uapi.ptrace import PT_REGS

if TYPE_CHECKING:
    from .kernel import Kernel

_INTS = [  # name, size, encoding
    ("char", 1, 0), ("unsigned char", 1, 0), ("signed char", 1, INT_SIGNED), ("short int", 2, INT_SIGNED),
    ("short unsigned int", 2, 0), ("int", 4, INT_SIGNED), ("unsigned int", 4, 0), ("long int", 8, INT_SIGNED),
    ("long unsigned int", 8, 0), ("long long int", 8, INT_SIGNED), ("long long unsigned int", 8, 0),
    ("_Bool", 1, INT_BOOL), ("__ARRAY_SIZE_TYPE__", 4, 0),
]
_ALIASES = {
    "long": "long int", "unsigned long": "long unsigned int", "short": "short int",
    "unsigned short": "short unsigned int", "unsigned": "unsigned int", "long long": "long long int",
    "unsigned long long": "long long unsigned int", "signed int": "int", "signed long": "long int",
}
_TYPEDEFS = [  # name, target (in order: targets first)
    ("__u8", "unsigned char"), ("__s8", "signed char"), ("__u16", "short unsigned int"), ("__s16", "short int"),
    ("__u32", "unsigned int"), ("__s32", "int"), ("__u64", "long long unsigned int"), ("__s64", "long long int"),
    ("u8", "__u8"), ("s8", "__s8"), ("u16", "__u16"), ("s16", "__s16"), ("u32", "__u32"), ("s32", "__s32"),
    ("u64", "__u64"), ("s64", "__s64"), ("bool", "_Bool"),
    ("__kernel_pid_t", "int"), ("pid_t", "__kernel_pid_t"), ("__kernel_uid32_t", "unsigned int"),
    ("__kernel_gid32_t", "unsigned int"), ("uid_t", "__kernel_uid32_t"), ("gid_t", "__kernel_gid32_t"),
    ("__kernel_ulong_t", "long unsigned int"), ("__kernel_size_t", "__kernel_ulong_t"), ("size_t", "__kernel_size_t"),
    ("__kernel_long_t", "long int"), ("__kernel_ssize_t", "__kernel_long_t"), ("ssize_t", "__kernel_ssize_t"),
    ("__kernel_loff_t", "long long int"), ("loff_t", "__kernel_loff_t"), ("umode_t", "short unsigned int"),
    ("ktime_t", "s64"), ("__kernel_clockid_t", "int"), ("clockid_t", "__kernel_clockid_t"),
]
# x86_64's kernel-side pt_regs names (arch/x86/include/asm/ptrace.h) for the uapi ones.
_X86_KERNEL_NAMES = {"rbp": "bp", "rbx": "bx", "rax": "ax", "rcx": "cx", "rdx": "dx", "rsi": "si", "rdi": "di",
                     "orig_rax": "orig_ax", "rip": "ip", "eflags": "flags", "rsp": "sp"}

# Prototypes of the kernel functions kernel_sim runs (Linux 6.18 signatures; unknown ones are left out).
PROTOS = {
    "do_sys_openat2": "long (int dfd, const char *filename, struct open_how *how)",
    "do_sys_open": "long (int dfd, const char *filename, int flags, umode_t mode)",
    "getname_flags": "struct filename *(const char *filename, int flags)",
    "do_filp_open": "struct file *(int dfd, struct filename *pathname, const struct open_flags *op)",
    "vfs_open": "int (const struct path *path, struct file *file)",
    "security_file_open": "int (struct file *file)",
    "ksys_read": "ssize_t (unsigned int fd, char *buf, size_t count)",
    "vfs_read": "ssize_t (struct file *file, char *buf, size_t count, loff_t *pos)",
    "ksys_write": "ssize_t (unsigned int fd, const char *buf, size_t count)",
    "vfs_write": "ssize_t (struct file *file, const char *buf, size_t count, loff_t *pos)",
    "close_fd": "int (unsigned int fd)",
    "filp_close": "int (struct file *filp, void *id)",
    "do_unlinkat": "int (int dfd, struct filename *name)",
    "bprm_execve": "int (struct linux_binprm *bprm)",
    "kernel_clone": "pid_t (struct kernel_clone_args *args)",
    "copy_process": "struct task_struct *(struct pid *pid, int trace, int node, struct kernel_clone_args *args)",
    "wake_up_new_task": "void (struct task_struct *p)",
    "do_exit": "void (long code)",
    "do_group_exit": "void (int exit_code)",
    "do_nanosleep": "int (struct hrtimer_sleeper *t, int mode)",
    "hrtimer_nanosleep": "long (ktime_t rqtp, int mode, clockid_t clockid)",
    "__sys_connect": "int (int fd, struct sockaddr *uservaddr, int addrlen)",
    "inet_stream_connect": "int (struct socket *sock, struct sockaddr *uaddr, int addr_len, int flags)",
    "tcp_v4_connect": "int (struct sock *sk, struct sockaddr *uaddr, int addr_len)",
    "tcp_connect": "int (struct sock *sk)",
    "bpf_map_update_value": "int (struct bpf_map *map, struct file *map_file, void *key, void *value, u64 flags)",
    "perf_ioctl": "long (struct file *file, unsigned int cmd, unsigned long arg)",
    "do_epoll_wait": "int (int epfd, struct epoll_event *events, int maxevents, struct timespec64 *to)",
    "do_epoll_ctl": "int (int epfd, int op, int fd, struct epoll_event *epds, bool nonblock)",
    "do_eventfd": "int (unsigned int count, int flags)",
    "schedule": "void (void)",
    "__schedule": "void (int sched_mode)",
    "finish_task_switch": "struct rq *(struct task_struct *prev)",
    "try_to_wake_up": "int (struct task_struct *p, unsigned int state, int wake_flags)",
    "wake_up_process": "int (struct task_struct *p)",
    "kfree": "void (const void *objp)",
    "x64_sys_call": "long (const struct pt_regs *regs, unsigned int nr)",
    "do_syscall": "void (struct pt_regs *regs)",
}
SYSCALL_ENTRY_PROTO = "long (const struct pt_regs *regs)"
_PROTO = re.compile(r"^(.*?)\s*\((.*)\)$")


class VmlinuxBuilder:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.arch = kernel.arch
        self.w = BtfWriter()
        self.ids: dict[str, int] = {}      # base and typedef names -> id
        self.structs: dict[str, int] = {}  # "struct X" / "union X" -> id (defined or FWD)

    # -- C type names -> ids -------------------------------------------------------------------
    def base_types(self) -> None:
        for name, size, enc in _INTS:
            self.ids[name] = self.w.int_type(name, size, enc)
        for name, target in _TYPEDEFS:
            self.ids[name] = self.w.typedef(name, self.ids[target])

    def aggregate(self, name: str, union: bool = False) -> int:
        """The id of ``struct name`` (a FWD until it is defined)."""
        key = f"{'union' if union else 'struct'} {name}"
        if key not in self.structs:
            self.structs[key] = self.w.fwd(name, union)
        return self.structs[key]

    def define(self, name: str, members, *, size: int | None = None, union: bool = False) -> int:
        key = f"{'union' if union else 'struct'} {name}"
        reserved = self.structs.get(key)
        if reserved is not None and self.w._kind[reserved] in (STRUCT, UNION) and self.w._records[reserved] is None:
            type_id = self.w.struct(name, members, size=size, union=union, type_id=reserved)
        else:
            type_id = self.w.struct(name, members, size=size, union=union)
        self.structs[key] = type_id
        return type_id

    def reserve(self, name: str) -> int:
        """An id for a struct that points at itself (task_struct)."""
        self.structs[f"struct {name}"] = self.w.reserve()
        return self.structs[f"struct {name}"]

    def ctype(self, text: str) -> int:
        """The id of a C type written as text: "const char *", "struct pt_regs *", "unsigned long", "void"."""
        text = " ".join(text.replace("*", " * ").split())
        stars = text.count("*")
        words = [w for w in text.replace("*", " ").split()]
        const = "const" in words
        words = [w for w in words if w not in ("const", "volatile")]
        base = " ".join(words)
        if base == "void":
            tid = 0
        elif words and words[0] in ("struct", "union"):
            tid = self.aggregate(words[1], words[0] == "union")
        elif words and words[0] == "enum":
            tid = self.ids["int"]
        else:
            tid = self.ids[_ALIASES.get(base, base)]
        if const:
            tid = self.w.const(tid)
        for _ in range(stars):
            tid = self.w.ptr(tid)
        return tid

    def proto(self, text: str, first_void_ptr: bool = False) -> int:
        ret, params = _PROTO.match(text).groups()  # type: ignore[union-attr]
        plist: list[tuple[str, int]] = [("", self.ctype("void *"))] if first_void_ptr else []
        if params.strip() not in ("", "void"):
            for param in params.split(","):
                m = re.match(r"^(.*?)(\w+)$", param.strip())
                ptype, pname = m.groups()  # type: ignore[union-attr]
                plist.append(("" if first_void_ptr else pname, self.ctype(ptype)))
        return self.w.func_proto(self.ctype(ret), plist)

    # -- from ctypes layouts ----------------------------------------------------------------------
    _SCALARS = {(1, False): "unsigned char", (1, True): "signed char", (2, False): "short unsigned int",
                (2, True): "short int", (4, False): "unsigned int", (4, True): "int",
                (8, False): "long unsigned int", (8, True): "long int"}

    def scalar(self, ct) -> int:
        if ct is ctypes.c_char:
            return self.ids["char"]
        size = ctypes.sizeof(ct)
        signed = ct(-1).value == -1
        return self.ids[self._SCALARS[(size, signed)]]

    def from_ctypes(self, name: str, cls, *, pointers=None, typedefs=None, nested=None) -> int:
        pointers, typedefs, nested = pointers or {}, typedefs or {}, nested or {}
        members = []
        for fname, ft in cls._fields_:
            off = getattr(cls, fname).offset
            if fname in pointers:
                target = pointers[fname]
                tid = self.w.ptr(self.ids[target] if target in self.ids else self.aggregate(target))
            elif fname in typedefs:
                tid = self.ctype(typedefs[fname])
            elif fname in nested:
                tid = nested[fname]
            elif issubclass(ft, ctypes.Array):
                tid = self.w.array(self.scalar(ft._type_), ft._length_, self.ids["__ARRAY_SIZE_TYPE__"])
            else:
                tid = self.scalar(ft)
            members.append((fname, tid, off))
        return self.define(name, members, size=ctypes.sizeof(cls))

    # -- the parts -----------------------------------------------------------------------------------
    def pt_regs(self) -> int:
        ulong = self.ids["long unsigned int"]
        fields = [f for f, _ in PT_REGS[self.arch]._fields_]
        if self.arch == "x86_64":
            return self.define("pt_regs", [(_X86_KERNEL_NAMES.get(f, f), ulong) for f in fields])
        if self.arch == "loongarch64":
            regs = self.w.array(ulong, 32, self.ids["__ARRAY_SIZE_TYPE__"])
            return self.define("pt_regs", [("regs", regs)] + [(f, ulong) for f in fields[32:]])
        return self.define("pt_regs", [(f, ulong) for f in fields])

    def tasks(self) -> None:
        tk = task_kmem
        self.reserve("task_struct")
        counter = self.w.struct("", [("counter", self.ids["s64"], 0)], size=8)
        atomic64 = self.w.typedef("atomic64_t", counter)
        atomic_long = self.w.typedef("atomic_long_t", atomic64)
        kuid = self.w.typedef("kuid_t", self.w.struct("", [("val", self.ids["uid_t"], 0)], size=4))
        kgid = self.w.typedef("kgid_t", self.w.struct("", [("val", self.ids["gid_t"], 0)], size=4))
        cred_nested = {"usage": atomic_long}
        cred_nested |= {n: kuid for n in ("uid", "suid", "euid", "fsuid")}
        cred_nested |= {n: kgid for n in ("gid", "sgid", "egid", "fsgid")}
        self.from_ctypes("cred", tk.Cred, nested=cred_nested)
        self.from_ctypes("task_struct", tk.TaskStruct, pointers=tk.POINTERS[tk.TaskStruct],
                         typedefs={**tk.TYPEDEFS[tk.TaskStruct], "start_time": "u64"})
        self.from_ctypes("linux_binprm", raw_tp.LinuxBinprm, pointers=raw_tp.POINTERS[raw_tp.LinuxBinprm],
                         typedefs={"p": "unsigned long"})

    def trace_events(self) -> None:
        ushort, uchar, int_ = self.ids["short unsigned int"], self.ids["unsigned char"], self.ids["int"]
        entry = self.define("trace_entry", [("type", ushort), ("flags", uchar), ("preempt_count", uchar), ("pid", int_)])
        data = self.w.array(self.ids["char"], 0, self.ids["__ARRAY_SIZE_TYPE__"])
        ulongs = self.w.array(self.ids["long unsigned int"], 0, self.ids["__ARRAY_SIZE_TYPE__"])
        self.define("syscall_trace_enter", [("ent", entry, 0), ("nr", int_, 8), ("args", ulongs, 16)])
        self.define("syscall_trace_exit", [("ent", entry, 0), ("nr", int_, 8), ("ret", self.ids["long int"], 16)])
        for key, tp in sorted(self.kernel.tracing.by_name.items()):
            if tp.category in ("syscalls", "kprobes"):
                continue
            members = [("ent", entry, 0)]
            end = 8
            for ctype_text, fname, off, size, _signed in tp.fields:
                if ctype_text.startswith("__data_loc"):
                    members.append((f"__data_loc_{fname}", self.ids["u32"], off))
                else:
                    base = self.ctype(ctype_text)
                    m = re.match(r"^(\w+)\[(\d+)\]$", fname)
                    if m:
                        fname = m.group(1)
                        base = self.w.array(base, int(m.group(2)), self.ids["__ARRAY_SIZE_TYPE__"])
                    members.append((fname, base, off))
                end = max(end, off + size)
            members.append(("__data", data, end))
            self.define(f"trace_event_raw_{tp.name}", members)
            del key

    def raw_tracepoints(self) -> None:
        tracing = self.kernel.tracing
        for spec in raw_tp.RAW_TRACEPOINTS.values():
            if spec.key not in tracing.by_name:
                continue
            params = ", ".join(f"{ctype} {name}" for ctype, name in spec.params)
            proto = self.proto(f"void ({params})", first_void_ptr=True)
            self.w.typedef(f"btf_trace_{spec.name}", self.w.ptr(proto))

    def functions(self) -> None:
        prefix = ENTRY_PREFIX[self.arch]
        for fn in kernel_functions(self.arch):
            if fn.special:
                continue
            text = SYSCALL_ENTRY_PROTO if fn.name.startswith(prefix) else PROTOS.get(fn.name)
            if text is not None:
                self.w.func(fn.name, self.proto(text))

    def build(self) -> bytes:
        self.base_types()
        self.pt_regs()
        self.tasks()
        self.trace_events()
        self.raw_tracepoints()
        self.functions()
        return self.w.to_bytes()


def build_vmlinux_btf(kernel: Kernel) -> bytes:
    return VmlinuxBuilder(kernel).build()


def vmlinux_btf(kernel: Kernel) -> bytes:
    """The kernel's /sys/kernel/btf/vmlinux bytes, built at first use."""
    blob = getattr(kernel, "_vmlinux_btf", None)
    if blob is None:
        blob = kernel._vmlinux_btf = build_vmlinux_btf(kernel)
    return blob
