"""Tracepoints and tracefs: events/*/id and format, kprobe_events, trace_pipe.

A Tracepoint knows its id and record layout (the common trace_entry header, then its fields);
``emit`` builds the record bytes and runs every enabled perf event attached to it. The legacy
kprobe path Aya takes on old kernels writes "p:kprobes/NAME SYMBOL" to kprobe_events, reads
events/kprobes/NAME/id and opens that id as a tracepoint.
"""

from __future__ import annotations

import errno
import itertools
import re
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .fs.file import File, oserror
from .fs.vfs import OpenHook
from .perf.events import TracingEvent
from .syscall_table import ARG_TYPES, SYSCALLS, syscalls_of
from .task import current
from .uapi.bpf import ProgType
from .uapi.epoll import EPOLLIN, EPOLLRDNORM, O_ACCMODE, O_RDONLY
from .uapi.perf import PerfType

if TYPE_CHECKING:
    from .kernel import Kernel

TRACEFS = "/sys/kernel/tracing"
_COMMON = struct.Struct("<HBBi")  # common_type, common_flags, common_preempt_count, common_pid
_COMMON_FIELDS = [
    ("unsigned short", "common_type", 0, 2, 0),
    ("unsigned char", "common_flags", 2, 1, 0),
    ("unsigned char", "common_preempt_count", 3, 1, 0),
    ("int", "common_pid", 4, 4, 1),
]


@dataclass
class Tracepoint:
    category: str
    name: str
    id: int
    # (C type, name, offset, size, signed) after the common header.
    fields: list[tuple[str, str, int, int, int]]
    events: list[TracingEvent] = field(default_factory=list)
    # Raw tracepoint probes (kernel_sim/bpf/raw_tp.py): called with emit()'s values.
    raw_hooks: list = field(default_factory=list)

    @property
    def size(self) -> int:
        last = max((f[2] + f[3] for f in self.fields), default=8)
        return max(8, last)

    def record(self, pid: int, values: dict[str, int | bytes]) -> bytearray:
        buf = bytearray(self.size)
        _COMMON.pack_into(buf, 0, self.id & 0xFFFF, 0, 0, pid)
        for ctype, fname, off, size, _signed in self.fields:
            v = values.get(fname.split("[", 1)[0], 0)
            if ctype.startswith("__data_loc"):
                # Dynamic data goes after the fixed part; the field holds (length << 16) | offset.
                data = bytes(v) + b"\0" if isinstance(v, bytes | bytearray) else b"\0"
                loc = len(buf)
                buf += data
                buf[off : off + 4] = ((len(data) << 16) | loc).to_bytes(4, "little")
            elif isinstance(v, bytes | bytearray):
                buf[off : off + size] = bytes(v[:size]).ljust(size, b"\0")
            else:
                buf[off : off + size] = (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        return buf

    def format_text(self) -> str:
        lines = [f"name: {self.name}", f"ID: {self.id}", "format:"]
        for ctype, fname, off, size, signed in _COMMON_FIELDS:
            lines.append(f"\tfield:{ctype} {fname};\toffset:{off};\tsize:{size};\tsigned:{signed};")
        lines.append("")
        for ctype, fname, off, size, signed in self.fields:
            lines.append(f"\tfield:{ctype} {fname};\toffset:{off};\tsize:{size};\tsigned:{signed};")
        lines.append("")
        return "\n".join(lines) + "\n"


class TracepointEvent(TracingEvent):
    def __init__(self, subsys, attr, pid, cpu, tracepoint: Tracepoint) -> None:
        super().__init__(subsys, attr, pid, cpu)
        self.tracepoint = tracepoint
        tracepoint.events.append(self)
        _sync_probe(tracepoint)

    @property
    def prog_type(self) -> int:  # type: ignore[override]
        # Kprobe-backed trace events (the legacy tracefs path) take kprobe programs.
        return ProgType.KPROBE if self.tracepoint.category == "kprobes" else ProgType.TRACEPOINT

    def hook_events(self) -> list[TracingEvent]:
        return self.tracepoint.events

    def unregister(self) -> None:
        if self in self.tracepoint.events:
            self.tracepoint.events.remove(self)
        _sync_probe(self.tracepoint)


def _sync_probe(tp: Tracepoint) -> None:
    """A kprobe-backed trace event arms its kprobe while perf events use it (Linux enables it then)."""
    probe = getattr(tp, "probe", None)
    if probe is not None:
        probe.sync()


class TracePipe(File):
    """trace_pipe: a consuming read of trace_printk lines; blocks until there is one."""

    name = "trace_pipe"
    pollable = True

    def __init__(self, tracing: Tracing, flags: int) -> None:
        super().__init__(flags)
        self.tracing = tracing
        tracing.pipe_readers.append(self)

    def read(self, n: int) -> bytes:
        lines = self.tracing.lines
        while True:
            with self.tracing.lock:
                if lines:
                    out = bytearray()
                    while lines and len(out) + len(lines[0]) <= n:
                        out += lines.popleft()
                    if not out:  # a line longer than n: give a piece of it
                        first = lines.popleft()
                        out, rest = first[:n], first[n:]
                        lines.appendleft(rest)
                    return bytes(out)
            if self.nonblocking:
                raise oserror(errno.EAGAIN)
            self.wq.wait_for(lambda: bool(lines), None)

    def poll(self) -> int:
        return EPOLLIN | EPOLLRDNORM if self.tracing.lines else 0

    def release(self) -> None:
        self.tracing.pipe_readers.remove(self)


class Tracing:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.lock = threading.Lock()
        self._ids = itertools.count(300)
        self.by_id: dict[int, Tracepoint] = {}
        self.by_name: dict[str, Tracepoint] = {}
        self.lines: deque[bytes] = deque(maxlen=65536)
        self.pipe_readers: list[TracePipe] = []
        self.kprobe_events: dict[str, str] = {}  # "kprobes/NAME" -> definition line
        kernel.perf.pmus[PerfType.TRACEPOINT] = self._open_tracepoint_event
        self._add_syscall_tracepoints()
        self.add("sched", "sched_process_exec", [
            ("__data_loc char[]", "filename", 8, 4, 0), ("pid_t", "pid", 12, 4, 1), ("pid_t", "old_pid", 16, 4, 1)])
        self.add("sched", "sched_switch", [
            ("char", "prev_comm[16]", 8, 16, 0), ("pid_t", "prev_pid", 24, 4, 1), ("int", "prev_prio", 28, 4, 1),
            ("long", "prev_state", 32, 8, 1), ("char", "next_comm[16]", 40, 16, 0), ("pid_t", "next_pid", 56, 4, 1),
            ("int", "next_prio", 60, 4, 1)])
        self.add("sched", "sched_process_exit", [
            ("char", "comm[16]", 8, 16, 0), ("pid_t", "pid", 24, 4, 1), ("int", "prio", 28, 4, 1)])
        self.add("raw_syscalls", "sys_enter", [("long", "id", 8, 8, 1), ("unsigned long", "args[6]", 16, 48, 0)])
        self.add("raw_syscalls", "sys_exit", [("long", "id", 8, 8, 1), ("long", "ret", 16, 8, 1)])
        self._populate_tracefs()

    # -- registry ---------------------------------------------------------------------------
    def add(self, category: str, name: str, fields) -> Tracepoint:
        tp = Tracepoint(category, name, next(self._ids), list(fields))
        self.by_id[tp.id] = tp
        self.by_name[f"{category}/{name}"] = tp
        base = f"{TRACEFS}/events/{category}/{name}"
        vfs = self.kernel.vfs
        vfs.add_file(f"{base}/id", lambda: f"{tp.id}\n", fs="tracefs")
        vfs.add_file(f"{base}/format", tp.format_text, fs="tracefs")
        vfs.add_file(f"{base}/enable", lambda: "1\n" if tp.events else "0\n", lambda data: len(data), fs="tracefs")
        return tp

    def remove(self, key: str) -> None:
        tp = self.by_name.pop(key)
        self.by_id.pop(tp.id, None)
        parent = self.kernel.vfs.lookup(f"{TRACEFS}/events/{tp.category}")
        parent.children.pop(tp.name, None)

    def _add_syscall_tracepoints(self) -> None:
        for name in syscalls_of(self.kernel.arch):
            args = SYSCALLS[name][2]
            enter = [("int", "__syscall_nr", 8, 4, 1)]
            enter += [(ARG_TYPES.get(arg, "long"), arg, 16 + 8 * i, 8, 0) for i, arg in enumerate(args)]
            self.add("syscalls", f"sys_enter_{name}", enter)
            self.add("syscalls", f"sys_exit_{name}", [("int", "__syscall_nr", 8, 4, 1), ("long", "ret", 16, 8, 1)])

    def _open_tracepoint_event(self, subsys, attr, pid, cpu) -> TracepointEvent:
        tp = self.by_id.get(attr.config)
        if tp is None:
            raise oserror(errno.EINVAL)
        return TracepointEvent(subsys, attr, pid, cpu, tp)

    # -- firing -------------------------------------------------------------------------------
    def emit(self, key: str, **values) -> None:
        """Fire a tracepoint: build its record once and run each enabled attached program."""
        tp = self.by_name.get(key)
        if tp is None or not (tp.events or tp.raw_hooks):
            return
        for hook in list(tp.raw_hooks):
            hook(values)
        if not tp.events:
            return
        task = current()
        record = tp.record(task.pid if task else 0, values)
        for event in list(tp.events):
            if event.enabled and event.prog is not None:
                event.fire(record)

    def has_listeners(self, key: str) -> bool:
        tp = self.by_name.get(key)
        return bool(tp and (tp.events or tp.raw_hooks))

    # -- trace_printk -------------------------------------------------------------------------
    def printk(self, text: str) -> None:
        """A trace_pipe line as Linux formats it: comm-pid [cpu] flags timestamp: text."""
        task = current()
        comm, pid = (task.comm, task.pid) if task else ("<idle>", 0)
        cpu = getattr(task, "cpu", 0) if task else 0
        ts = self.kernel.clock_ns() / 1e9 if hasattr(self.kernel, "clock_ns") else 0.0
        line = f"{comm:>16}-{pid:<7} [{cpu:03d}] d..31 {ts:12.6f}: bpf_trace_printk: {text}"
        if not line.endswith("\n"):
            line += "\n"
        with self.lock:
            self.lines.append(line.encode())
        for reader in list(self.pipe_readers):
            reader.wq.wake(EPOLLIN)

    # -- tracefs ------------------------------------------------------------------------------
    def _populate_tracefs(self) -> None:
        vfs = self.kernel.vfs
        vfs.add_file(f"{TRACEFS}/kprobe_events", self._kprobe_events_text, self._write_kprobe_events,
                     fs="tracefs", mode=0o644)
        vfs.add_file(f"{TRACEFS}/uprobe_events", lambda: "", lambda data: len(data), fs="tracefs")
        vfs.add_file(f"{TRACEFS}/available_events",
                     lambda: "".join(f"{k.replace('/', ':')}\n" for k in sorted(self.by_name)), fs="tracefs")
        vfs.add(f"{TRACEFS}/trace_pipe", OpenHook(self._open_trace_pipe))
        vfs.add_file(f"{TRACEFS}/trace", lambda: "# tracer: nop\n", lambda data: len(data), fs="tracefs")

    def _open_trace_pipe(self, flags: int) -> File:
        if flags & O_ACCMODE != O_RDONLY:
            raise oserror(errno.EACCES)
        return TracePipe(self, flags)

    def _kprobe_events_text(self) -> str:
        return "".join(line + "\n" for line in self.kprobe_events.values())

    _KPROBE_DEF = re.compile(r"^([pr])(\d*):(?:([\w-]+)/)?(\w+)\s+([\w.]+)(?:\+(\d+|0x[0-9a-fA-F]+))?\s*$")

    def _write_kprobe_events(self, data: bytes) -> int:
        """Define or remove kprobe trace events, as Linux parses kprobe_events lines."""
        for raw_line in data.decode(errors="replace").splitlines():
            line = raw_line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("-:"):
                name = line[2:].strip()
                key = name if "/" in name else f"kprobes/{name}"
                tp = self.by_name.get(key)
                if key not in self.kprobe_events or tp is None:
                    raise oserror(errno.ENOENT)
                if tp.events:
                    raise oserror(errno.EBUSY)
                del self.kprobe_events[key]
                self.remove(key)
                if getattr(tp, "probe", None) is not None:
                    tp.probe.release()  # type: ignore[attr-defined]
                continue
            m = self._KPROBE_DEF.match(line)
            if not m:
                raise oserror(errno.EINVAL)
            kind, _maxactive, group, name, symbol, offset = m.groups()
            group = group or "kprobes"
            key = f"{group}/{name}"
            if key in self.by_name:
                raise oserror(errno.EEXIST)
            off = int(offset, 0) if offset else 0
            self.define_kprobe_event(key, symbol, off, retprobe=kind == "r")
            self.kprobe_events[key] = f"{kind}:{key} {symbol}" + (f"+{off}" if off else "")
        return len(data)

    def define_kprobe_event(self, key: str, symbol: str, offset: int, retprobe: bool) -> Tracepoint:
        """Create the trace event; the kprobe subsystem hooks it up (ENOENT for unknown symbols)."""
        hook = getattr(self.kernel, "kprobe_trace_event_hook", None)
        if hook is not None:
            hook(symbol, offset, retprobe)  # validates the symbol and offset
        category, name = key.split("/")
        tp = self.add(category, name, [("unsigned long", "__probe_ip", 8, 8, 0)])
        tp.kprobe = (symbol, offset, retprobe)  # type: ignore[attr-defined]
        kprobes = getattr(self.kernel, "kprobes", None)
        if kprobes is not None:  # fires the event's programs on pt_regs through a real kprobe
            tp.probe = kprobes.trace_event_probe(tp, symbol, offset, retprobe)  # type: ignore[attr-defined]
        return tp
