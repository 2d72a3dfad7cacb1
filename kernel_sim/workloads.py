"""Built-in workloads: what the simulated system does while a BPF program watches it.

Each workload is a set of tasks, each a generator making syscalls through the kernel's entry
(so tracepoints and kprobes see them) and pacing itself with nanosleep on its CPU thread.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .syscall_entry import AT_FDCWD
from .uapi.epoll import O_RDONLY, O_WRONLY

if TYPE_CHECKING:
    from .kernel import Kernel
    from .task import Task

_TIMESPEC = struct.Struct("<qq")


def _sleep(k: Kernel, task: Task, seconds: float) -> int:
    ts = task.memory.put(_TIMESPEC.pack(int(seconds), int((seconds % 1) * 1e9)))
    return k.syscall(task, "nanosleep", ts, 0)


def _cat(k: Kernel, task: Task, path: str) -> Iterator[None]:
    fd = k.syscall(task, "openat", AT_FDCWD, task.memory.put_str(path), O_RDONLY, 0)
    yield
    if fd >= 0:
        buf = task.memory.alloc(256)
        while k.syscall(task, "read", fd, buf, 256) > 0:
            yield
        k.syscall(task, "close", fd)
        yield


def idle(k: Kernel, cpu: int) -> list[Callable[[], Iterator[None]]]:
    """A quiet system: a daemon that wakes every 200 ms and checks a file."""
    task = k.spawn("systemd-journal", cpu=cpu)

    def run() -> Iterator[None]:
        while True:
            yield from _cat(k, task, "/etc/hostname")
            _sleep(k, task, 0.2)
            yield

    return [run] if cpu == 0 else []


def shell(k: Kernel, cpu: int) -> list[Callable[[], Iterator[None]]]:
    """An interactive shell: forks, execs ls/cat/grep, opens and reads files, writes output."""
    rng = random.Random(cpu)
    sh = k.spawn("bash", uid=1000, gid=1000, cpu=cpu)
    commands = [("/bin/cat", ["/etc/passwd"]), ("/bin/ls", ["/home/user/notes.txt"]),
                ("/usr/bin/grep", ["/etc/nsswitch.conf", "/var/log/syslog"]),
                ("/bin/cat", ["/home/user/notes.txt", "/etc/missing.conf"])]

    def run() -> Iterator[None]:
        for n in itertools.count():
            prog, files = commands[(n + cpu) % len(commands)]
            child_pid = k.syscall(sh, "clone", 0x11, 0, 0, 0, 0)
            yield
            child = k.tasks.get(child_pid)
            if child is None:
                continue
            k.syscall(child, "execve", child.memory.put_str(prog), 0, 0)
            yield
            for lib in ("/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu/libc.so.6"):
                yield from _cat(k, child, lib)
            for path in files:
                yield from _cat(k, child, path)
            out = k.syscall(child, "openat", AT_FDCWD, child.memory.put_str("/dev/null"), O_WRONLY, 0)
            if out >= 0:
                k.syscall(child, "write", out, child.memory.put(b"ok\n"), 3)
                k.syscall(child, "close", out)
            k.syscall(child, "exit_group", 0)
            yield
            _sleep(k, sh, 0.05 + rng.random() * 0.1)
            yield

    return [run]


def storm(k: Kernel, cpu: int) -> list[Callable[[], Iterator[None]]]:
    """A syscall storm: getpid/openat/close as fast as the CPU thread goes."""
    task = k.spawn("stress-ng", cpu=cpu)

    def run() -> Iterator[None]:
        while True:
            k.syscall(task, "getpid")
            # The name is written for each call: user memory is a ring (kernel_sim/user_memory.py),
            # and a pointer kept across thousands of calls would be overwritten by later ones.
            fd = k.syscall(task, "openat", AT_FDCWD, task.memory.put_str("/etc/hostname"), O_RDONLY, 0)
            if fd >= 0:
                k.syscall(task, "close", fd)
            yield

    return [run]


WORKLOADS = {"idle": idle, "shell": shell, "storm": storm}
