"""The system calls kernel_sim has, with their numbers per arch and their argument names.

x86_64 has its own numbering; riscv64 and loongarch64 share the generic table (which has no
epoll_wait, only epoll_pwait). The names and argument lists feed the syscalls/sys_enter_* and
sys_exit_* tracepoints and the __<arch>_sys_* entry points.
"""

from __future__ import annotations

# name -> (x86_64 nr, generic nr, argument names)
SYSCALLS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "read": (0, 63, ("fd", "buf", "count")),
    "write": (1, 64, ("fd", "buf", "count")),
    "close": (3, 57, ("fd",)),
    "mmap": (9, 222, ("addr", "len", "prot", "flags", "fd", "off")),
    "ioctl": (16, 29, ("fd", "cmd", "arg")),
    "nanosleep": (35, 101, ("rqtp", "rmtp")),
    "getpid": (39, 172, ()),
    "connect": (42, 203, ("fd", "uservaddr", "addrlen")),
    "clone": (56, 220, ("clone_flags", "newsp", "parent_tidptr", "child_tidptr", "tls")),
    "execve": (59, 221, ("filename", "argv", "envp")),
    "exit": (60, 93, ("error_code",)),
    "uname": (63, 160, ("name",)),
    "exit_group": (231, 94, ("error_code",)),
    "epoll_wait": (232, -1, ("epfd", "events", "maxevents", "timeout")),
    "epoll_ctl": (233, 21, ("epfd", "op", "fd", "event")),
    "openat": (257, 56, ("dfd", "filename", "flags", "mode")),
    "unlinkat": (263, 35, ("dfd", "pathname", "flag")),
    "epoll_pwait": (281, 22, ("epfd", "events", "maxevents", "timeout", "sigmask", "sigsetsize")),
    "eventfd2": (290, 19, ("count", "flags")),
    "epoll_create1": (291, 20, ("flags",)),
    "perf_event_open": (298, 241, ("attr_uptr", "pid", "cpu", "group_fd", "flags")),
    "bpf": (321, 280, ("cmd", "uattr", "size")),
}

ENTRY_PREFIX = {"x86_64": "__x64_sys_", "riscv64": "__riscv_sys_", "loongarch64": "sys_"}


def syscall_nr(arch: str, name: str) -> int:
    x86, generic, _ = SYSCALLS[name]
    return x86 if arch == "x86_64" else generic


def syscalls_of(arch: str) -> dict[str, int]:
    """name -> number for the syscalls this arch has."""
    return {name: syscall_nr(arch, name) for name in SYSCALLS if syscall_nr(arch, name) >= 0}


# C types of the arguments, as the syscalls/sys_enter_* formats print them (default: long).
ARG_TYPES = {
    "fd": "unsigned int", "buf": "char *", "count": "size_t", "addr": "unsigned long", "len": "unsigned long",
    "prot": "unsigned long", "off": "unsigned long", "cmd": "unsigned int", "arg": "unsigned long",
    "rqtp": "struct __kernel_timespec *", "rmtp": "struct __kernel_timespec *",
    "uservaddr": "struct sockaddr *", "addrlen": "int", "clone_flags": "unsigned long", "newsp": "unsigned long",
    "parent_tidptr": "int *", "child_tidptr": "int *", "tls": "unsigned long", "filename": "const char *",
    "argv": "const char *const *", "envp": "const char *const *", "error_code": "int",
    "name": "struct new_utsname *", "epfd": "int", "events": "struct epoll_event *", "maxevents": "int",
    "timeout": "int", "op": "int", "event": "struct epoll_event *", "dfd": "int", "flags": "int",
    "mode": "umode_t", "pathname": "const char *", "flag": "int", "sigmask": "const sigset_t *",
    "sigsetsize": "size_t", "attr_uptr": "struct perf_event_attr *", "pid": "pid_t", "cpu": "int",
    "group_fd": "int", "uattr": "union bpf_attr *", "size": "unsigned int",
}
