"""System call entry for tasks: tracepoints, then the chain of kernel functions Linux runs.

``Kernel.syscall(task, name, *args)`` is what a simulated task (or the Syscalls seam) does to
enter the kernel: it fires raw_syscalls/sys_enter and syscalls/sys_enter_<name>, enters the
arch's syscall dispatcher (x64_sys_call / do_syscall_64 style) and the __<arch>_sys_<name>
entry point, whose body calls the Linux-named kernel functions (do_sys_openat2, vfs_read,
kernel_clone, ...) through ``Kernel.kcall`` — the place where kprobes hit — then fires the
exit tracepoints. Arguments are register values; pointers point into the task's user memory.

As on Linux with ARCH_HAS_SYSCALL_WRAPPER (x86_64 since 4.17, riscv64 since 6.6), the entry
point ``__x64_sys_<name>`` / ``__riscv_sys_<name>`` takes ONE argument: a pointer to the user
pt_regs saved at syscall entry (task_pt_regs(current), kernel_sim/task_kmem.py: the syscall
arguments in the arch's syscall argument registers, the number in orig_rax / a7), and the
dispatcher is ``x64_sys_call(const struct pt_regs *regs, unsigned int nr)`` (x86_64) or
``do_syscall(struct pt_regs *regs)``. That is what libbpf's BPF_KSYSCALL / PT_REGS_SYSCALL_REGS
(= PARM1) expect. loongarch64 selects no wrapper: its ``sys_<name>`` takes the plain arguments
(libbpf's PT_REGS_SYSCALL_REGS(ctx) is ctx there). Inner functions (do_sys_openat2, vfs_read,
...) always take plain register arguments. The pt_regs are filled only when a probe can see them
(the dispatcher or the wrapper is probed): Kprobes.kcall_lazy.
"""

from __future__ import annotations

import errno
import struct
import time
from typing import TYPE_CHECKING

from .bpf.syscall import sys_bpf as bpf_dispatch
from .cpus import on_cpu
from .fs.file import oserror
from .syscall_table import ENTRY_PREFIX, SYSCALLS, syscall_nr
from .task import Task, running
from .task_kmem import task_kmem
from .uapi.epoll import PAGE_SIZE
from .uapi.perf import PERF_ATTR_SIZE_VER0
from .usermem import copy_from_user, copy_to_user, strncpy_from_user

if TYPE_CHECKING:
    from .kernel import Kernel

AT_FDCWD = -100
PATH_MAX = 4096
_OPEN_HOW = struct.Struct("<QQQ")  # struct open_how { u64 flags; u64 mode; u64 resolve; }
_TIMESPEC = struct.Struct("<qq")
WRAPPED_ARCHES = frozenset({"x86_64", "riscv64"})  # ARCH_HAS_SYSCALL_WRAPPER (loongarch64 has none)


def _errno_of(e: OSError) -> int:
    return -(e.errno or errno.EIO)


class SyscallEntry:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.prefix = ENTRY_PREFIX[kernel.arch]
        self.dispatcher = "x64_sys_call" if kernel.arch == "x86_64" else "do_syscall"
        self.wrapped = kernel.arch in WRAPPED_ARCHES  # entry points take a pt_regs pointer
        self.bodies = {name: getattr(self, f"sys_{name}") for name in SYSCALLS if hasattr(self, f"sys_{name}")}

    # -- entry --------------------------------------------------------------------------------
    def __call__(self, task: Task, name: str, *args: int) -> int:
        k = self.kernel
        nr = syscall_nr(k.arch, name)
        body = self.bodies.get(name)
        with running(task), on_cpu(task.cpu):
            tracing = k.tracing
            enter = f"syscalls/sys_enter_{name}"
            if tracing.has_listeners("raw_syscalls/sys_enter"):
                raw = b"".join((a & (2**64 - 1)).to_bytes(8, "little") for a in args[:6])
                tracing.emit("raw_syscalls/sys_enter", id=nr, args=raw)
            if tracing.has_listeners(enter):
                names = SYSCALLS[name][2]
                tracing.emit(enter, __syscall_nr=nr, **dict(zip(names, args, strict=False)))
            if body is None:
                ret = -errno.ENOSYS
            else:
                ret = self._dispatch(task, nr, self.prefix + name, args, body)
            if tracing.has_listeners(f"syscalls/sys_exit_{name}"):
                tracing.emit(f"syscalls/sys_exit_{name}", __syscall_nr=nr, ret=ret)
            if tracing.has_listeners("raw_syscalls/sys_exit"):
                tracing.emit("raw_syscalls/sys_exit", id=nr, ret=ret)
        return ret

    def _dispatch(self, task: Task, nr: int, entry: str, args: tuple, body) -> int:
        """The dispatcher, then the entry point, each given a pointer to the task's user pt_regs."""
        kprobes = self.kernel.kprobes
        saved: list[int] = []

        def user_regs() -> int:  # task_pt_regs(current), filled once per syscall when first needed
            if not saved:
                saved.append(task_kmem(self.kernel).set_syscall_regs(task, nr, args))
            return saved[0]

        if self.wrapped:
            def wrapper() -> int:
                return kprobes.kcall_lazy(entry, lambda: (user_regs(),), lambda: body(*args))
        else:
            def wrapper() -> int:
                return kprobes.kcall(entry, args, body)

        if self.kernel.arch == "x86_64":
            dispatcher_args = lambda: (user_regs(), nr & 0xFFFFFFFF)  # noqa: E731
        else:
            dispatcher_args = lambda: (user_regs(),)  # noqa: E731
        ret = kprobes.kcall_lazy(self.dispatcher, dispatcher_args, wrapper)
        if saved:  # as do_syscall_64's regs->ax = ...: a kretprobe reading the regs sees the result
            task_kmem(self.kernel).set_syscall_ret(task, nr, ret)
        return ret

    # -- files ----------------------------------------------------------------------------------
    def sys_openat(self, dfd: int, filename: int, flags: int, mode: int = 0) -> int:
        task = _task()
        how = task.memory.put(_OPEN_HOW.pack(flags & 0xFFFFFFFF, mode, 0))
        return self.kernel.kcall("do_sys_openat2", (dfd, filename, how), self.do_sys_openat2)

    def do_sys_openat2(self, dfd: int, filename: int, how: int) -> int:
        try:
            flags, _mode, _resolve = _OPEN_HOW.unpack(copy_from_user(how, _OPEN_HOW.size))
            path = strncpy_from_user(filename, PATH_MAX).decode(errors="replace")
            if not path:
                return -errno.ENOENT
            if not path.startswith("/"):
                path = _task().state.get("cwd", "/") .rstrip("/") + "/" + path
            file = self.kernel.vfs.open(path, flags & ~0o2000000)
            return _task().files.install(file)
        except OSError as e:
            return _errno_of(e)

    def sys_read(self, fd: int, buf: int, count: int) -> int:
        try:
            file = _task().files.get(fd)
        except OSError as e:
            return _errno_of(e)
        return self.kernel.kcall("vfs_read", (id(file), buf, count, 0), lambda *_: self._vfs_read(file, buf, count))

    def _vfs_read(self, file, buf: int, count: int) -> int:
        try:
            data = file.read(count)
            copy_to_user(buf, data)
            return len(data)
        except OSError as e:
            return _errno_of(e)

    def sys_write(self, fd: int, buf: int, count: int) -> int:
        try:
            file = _task().files.get(fd)
        except OSError as e:
            return _errno_of(e)

        def vfs_write(*_):
            try:
                return file.write(copy_from_user(buf, count))
            except OSError as e:
                return _errno_of(e)

        return self.kernel.kcall("vfs_write", (id(file), buf, count, 0), vfs_write)

    def sys_close(self, fd: int) -> int:
        try:
            _task().files.close(fd)
            return 0
        except OSError as e:
            return _errno_of(e)

    def sys_unlinkat(self, dfd: int, pathname: int, flag: int) -> int:
        def do_unlinkat(*_):
            try:
                path = strncpy_from_user(pathname, PATH_MAX).decode(errors="replace")
                self.kernel.unlink(path)
                return 0
            except OSError as e:
                return _errno_of(e)

        return self.kernel.kcall("do_unlinkat", (dfd, pathname), do_unlinkat)

    # -- processes -----------------------------------------------------------------------------
    def sys_getpid(self) -> int:
        return _task().tgid

    def sys_execve(self, filename: int, argv: int, envp: int) -> int:
        def do_execveat_common(*_):
            try:
                path = strncpy_from_user(filename, PATH_MAX).decode(errors="replace")
                self.kernel.vfs.lookup(path)
            except OSError as e:
                return _errno_of(e)
            task = _task()
            old_pid = task.pid
            task.comm = path.rsplit("/", 1)[-1][:15]
            self.kernel.tracing.emit("sched/sched_process_exec", filename=path.encode(), pid=task.pid,
                                     old_pid=old_pid)
            return 0

        return self.kernel.kcall("do_execveat_common", (AT_FDCWD, filename, argv, envp, 0), do_execveat_common)

    def sys_clone(self, clone_flags: int, newsp: int = 0, parent_tidptr: int = 0, child_tidptr: int = 0,
                  tls: int = 0) -> int:
        def kernel_clone(*_):
            parent = _task()
            child = self.kernel.spawn(parent.comm, parent.uid, parent.gid, cpu=parent.cpu)
            child.state["parent"] = parent  # task_struct->real_parent (kernel_sim/task_kmem.py)
            return child.pid

        return self.kernel.kcall("kernel_clone", (clone_flags,), kernel_clone)

    def sys_exit(self, error_code: int) -> int:
        def do_exit(*_):
            task = _task()
            self.kernel.tracing.emit("sched/sched_process_exit", comm=task.comm_bytes, pid=task.pid)
            self.kernel.exit_task(task)
            return 0

        return self.kernel.kcall("do_exit", (error_code,), do_exit)

    sys_exit_group = sys_exit

    def sys_nanosleep(self, rqtp: int, rmtp: int) -> int:
        def do_nanosleep(*_):
            try:
                sec, nsec = _TIMESPEC.unpack(copy_from_user(rqtp, _TIMESPEC.size))
            except OSError as e:
                return _errno_of(e)
            if sec < 0 or not 0 <= nsec < 1_000_000_000:
                return -errno.EINVAL
            self.kernel.sleep(sec + nsec / 1e9)
            return 0

        return self.kernel.kcall("do_nanosleep", (rqtp, 1, 0), do_nanosleep)

    def sys_connect(self, fd: int, uservaddr: int, addrlen: int) -> int:
        # No network stack: the connect reaches tcp_v4_connect and is refused.
        return self.kernel.kcall("tcp_v4_connect", (fd, uservaddr, addrlen), lambda *_: -errno.ECONNREFUSED)

    # -- bpf, perf, ioctl ------------------------------------------------------------------------
    def sys_bpf(self, cmd: int, uattr: int, size: int) -> int:
        """__sys_bpf: copy bpf_attr in, run the command, copy it back (counts, info lengths, log
        sizes are written back even when the command fails, as Linux's copy_to_user calls are)."""
        try:
            raw = copy_from_user(uattr, size) if size else b""
        except OSError as e:
            return _errno_of(e)
        attr = bytearray(raw)
        try:
            return bpf_dispatch(self.kernel, cmd & 0xFFFFFFFF, memoryview(attr))
        except OSError as e:
            return _errno_of(e)
        finally:
            if attr != raw:  # only commands that write back pay for the copy
                try:
                    copy_to_user(uattr, bytes(attr))
                except OSError:
                    pass

    def sys_perf_event_open(self, attr_uptr: int, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        """perf_copy_attr reads the size field first, then that many bytes; E2BIG writes the
        kernel's size back into the user's attr."""
        perf = self.kernel.perf
        try:
            size = int.from_bytes(copy_from_user(attr_uptr + 4, 4), "little")
            n = size or PERF_ATTR_SIZE_VER0
            attr = bytearray(copy_from_user(attr_uptr, n if n <= PAGE_SIZE else 8))
        except OSError as e:
            return _errno_of(e)
        try:
            return perf.sys_perf_event_open(attr, pid, cpu, group_fd, flags)
        except OSError as e:
            if e.errno == errno.E2BIG:
                try:
                    copy_to_user(attr_uptr + 4, bytes(attr[4:8]))
                except OSError:
                    pass
            return _errno_of(e)

    def sys_ioctl(self, fd: int, cmd: int, arg: int) -> int:
        try:
            return _task().files.get(fd).ioctl(cmd & 0xFFFFFFFF, arg)
        except OSError as e:
            return _errno_of(e)

    def sys_uname(self, name: int) -> int:
        k = self.kernel
        fields = ["Linux", k.hostname, k.release, k.version, k.arch, "(none)"]
        raw = b"".join(f.encode()[:64].ljust(65, b"\0") for f in fields)
        try:
            copy_to_user(name, raw)
            return 0
        except OSError as e:
            return _errno_of(e)


def _task() -> Task:
    from .task import current

    task = current()
    if task is None:
        raise oserror(errno.ESRCH)
    return task


def monotonic_ns() -> int:
    return time.monotonic_ns()
