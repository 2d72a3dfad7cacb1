"""`bpfload run`: load an object, attach one program, stream what it sends, print its maps.

The command is the user-facing end of the whole stack: the loader (Ebpf) does the bpf()
work, runtime/ (trio + the epoll reactor) waits on the program's perf buffers or ring
buffers, event_decode turns samples into fields, and one of three sinks shows them - the live
tail UI on a terminal, one line per event otherwise, or one JSON object per line with
``--json``. Whatever happens (duration over, Ctrl-C, SIGTERM, an error mid-stream) the
program is detached and the maps are printed once, then everything is closed.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys as _sys
import time
from dataclasses import dataclass, field
from typing import Any

from .backends import KERNEL_KINDS
from .cli import ARCHES, CliError, subcommand

DEFAULT_WORKLOAD = "shell"
DEFAULT_PAGES = 64  # per CPU, as bcc's tools size their perf buffers
STREAM_MAP_TYPES = {"PERF_EVENT_ARRAY": 4, "RINGBUF": 27}
_ARRAY_TYPES = {2, 6}  # BPF_MAP_TYPE_ARRAY, PERCPU_ARRAY
VERIFIER_LINES = 3


# -- the attach target ---------------------------------------------------------------------------
@dataclass
class Target:
    """Where to attach: kind is kprobe, kretprobe, tracepoint or uprobe."""

    kind: str
    args: tuple
    offset: int = 0

    def describe(self) -> str:
        if self.kind in ("kprobe", "kretprobe"):
            return f"{self.kind} {self.args[0]}" + (f"+{self.offset:#x}" if self.offset else "")
        if self.kind == "tracepoint":
            return f"tracepoint {self.args[0]}:{self.args[1]}"
        return f"uprobe {self.args[0]}:{self.args[1]}" + (f"+{self.offset:#x}" if self.offset else "")


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise CliError(f"bad {what} {text!r}: expected a number") from None


def parse_target(args: argparse.Namespace) -> Target | None:
    if args.kprobe:
        sym, _, off = args.kprobe.partition("+")
        if not sym:
            raise CliError(f"bad --kprobe {args.kprobe!r}: expected SYM or SYM+OFFSET")
        return Target("kprobe", (sym,), _int(off, "kprobe offset") if off else 0)
    if args.kretprobe:
        return Target("kretprobe", (args.kretprobe,))
    if args.tracepoint:
        cat, sep, name = args.tracepoint.partition("/")
        if not sep:
            cat, sep, name = args.tracepoint.partition(":")
        if not (cat and sep and name):
            raise CliError(f"bad --tracepoint {args.tracepoint!r}: expected CATEGORY/NAME")
        return Target("tracepoint", (cat, name))
    if args.uprobe:
        path, sep, sym = args.uprobe.rpartition(":")
        if not (path and sep and sym):
            raise CliError(f"bad --uprobe {args.uprobe!r}: expected PATH:SYMBOL")
        sym, _, off = sym.partition("+")
        return Target("uprobe", (path, sym), _int(off, "uprobe offset") if off else 0)
    return None


def parse_globals(specs: list[str]) -> list[tuple[str, int | str]]:
    """--global NAME=VALUE: integers (any base), else the text as bytes of a string."""
    out = []
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not (name and sep):
            raise CliError(f"bad --global {spec!r}: expected NAME=VALUE")
        try:
            out.append((name, int(value, 0)))
        except ValueError:
            out.append((name, value))
    return out


_SECTION_KINDS = {"kprobe": "kprobe", "kretprobe": "kretprobe", "tracepoint": "tracepoint", "tp": "tracepoint",
                  "uprobe": "uprobe", "uretprobe": "uprobe"}


def _section(prog: Any) -> str:
    """The program's ELF section name ("kprobe/do_sys_openat2"), as the loader parsed it."""
    definition = getattr(prog, "definition", None)
    return str(getattr(prog, "section", None) or getattr(definition, "section", "") or "")


def program_kind(prog: Any) -> str | None:
    """kprobe / kretprobe / tracepoint / uprobe as the program's definition or section says."""
    kind = getattr(getattr(prog, "definition", None), "kind", None)
    for value in (getattr(kind, "value", kind), _section(prog)):
        head = str(value or "").split("/", 1)[0].lower()
        if head in _SECTION_KINDS:
            return _SECTION_KINDS[head]
    return None


def target_from_section(prog: Any) -> Target | None:
    """SEC("kprobe/do_sys_openat2") or SEC("tracepoint/sched/sched_process_exec") says where."""
    section = _section(prog)
    if "/" not in section:
        return None
    head, rest = section.split("/", 1)
    kind = _SECTION_KINDS.get(head)
    if kind in ("kprobe", "kretprobe") and rest:
        return Target(kind, (rest,))
    if kind == "tracepoint" and "/" in rest:
        cat, name = rest.split("/", 1)
        return Target("tracepoint", (cat, name))
    return None


def choose_program(ebpf: Any, name: str | None, target: Target | None, path: str) -> tuple[str, Any]:
    programs = dict(ebpf.programs)
    if name is not None:
        if name not in programs:
            raise CliError(f"no program {name!r} in {path} (has: {', '.join(programs) or 'none'})")
        return name, programs[name]
    if not programs:
        raise CliError(f"{path} has no programs")
    if len(programs) == 1:
        return next(iter(programs.items()))
    if target is not None:
        fits = [(n, p) for n, p in programs.items() if program_kind(p) == target.kind]
        if len(fits) == 1:
            return fits[0]
    raise CliError(f"{path} has {len(programs)} programs ({', '.join(programs)}): choose one with --program")


# -- errors into one line ------------------------------------------------------------------------
def shorten_verifier_log(log: str, lines: int = VERIFIER_LINES) -> str:
    """The lines of a verifier log that say why, joined into one: the last few before the
    statistics ("processed N insns ...", "verification time ...")."""
    kept = [ln.strip() for ln in log.splitlines() if ln.strip()]
    while kept and (kept[-1].startswith(("processed ", "verification time", "stack depth", "-- END"))):
        kept.pop()
    return " | ".join(kept[-lines:]) if kept else "(empty log)"


def loader_error(e: BaseException, what: str) -> CliError:
    """A loader exception as one line for the user."""
    log = getattr(e, "log", None)
    if log is not None and type(e).__name__ == "VerifierError":
        message = getattr(e, "message", str(e).splitlines()[0])
        err = CliError(f"{what}: verifier rejected it: {message}: {shorten_verifier_log(log)}")
        err.verifier_log = log  # the whole log, for --verifier-log
        return err
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, KeyError) and e.args:
        text = str(e.args[0])
    if text.startswith(what):
        return CliError(text)  # the loader already named the file / program
    return CliError(f"{what}: {text}")


def _has_kprobe_pmu(sys: Any) -> bool:
    try:
        sys.close(sys.openat("/sys/bus/event_source/devices/kprobe/type", 0))
        return True
    except OSError:
        return False


def attach_error(e: BaseException, target: Target, sys: Any) -> CliError:
    kernel_kind = sys.kind
    code = getattr(e, "errno", None)
    if target.kind in ("kprobe", "kretprobe") and not _has_kprobe_pmu(sys):
        return CliError(f"cannot attach to {target.describe()}: this {sys.kind} kernel has no kprobes "
                        "(no /sys/bus/event_source/devices/kprobe)")
    if code == errno.ENOENT and target.kind in ("kprobe", "kretprobe"):
        return CliError(f"cannot attach to {target.describe()}: no such kernel symbol in the {kernel_kind} kernel")
    if code == errno.ENOENT and target.kind == "tracepoint":
        return CliError(f"cannot attach to {target.describe()}: no such tracepoint in the {kernel_kind} kernel")
    if code == errno.ENOENT and target.kind == "uprobe":
        return CliError(f"cannot attach to {target.describe()}: no such file or symbol")
    return loader_error(e, f"cannot attach to {target.describe()}")


class AyaLogFormatter:
    """Records of Aya's log map (AYA_LOGS): "[INFO module] message", as aya-log prints them."""

    def decode(self, raw: bytes) -> dict[str, Any]:
        from .aya_log import decode_record

        try:
            rec = decode_record(raw)
        except Exception as e:  # a malformed record is shown, not fatal
            return {"log_error": str(e), "data": bytes(raw).hex()}
        return {"level": rec.level_name, "target": rec.target, "module": rec.module, "file": rec.file,
                "line": rec.line, "message": rec.message}

    @staticmethod
    def text(fields: dict[str, Any]) -> str:
        if "message" not in fields:
            return " ".join(f"{k}={v}" for k, v in fields.items())
        return f"[{fields['level']} {fields['module']}] {fields['message']}"


# -- the session ---------------------------------------------------------------------------------
@dataclass
class StreamMap:
    name: str
    kind: str  # "perf" or "ring"
    source: Any  # PerfEventArray or RingBuf
    formatter: Any
    buffers: list = field(default_factory=list)  # perf: PerfBuffer per CPU


class RunSession:
    """Everything `bpfload run` holds, so that teardown can release it in the right order."""

    def __init__(self, args: argparse.Namespace, sink: Any) -> None:
        self.args = args
        self.sink = sink
        self.sys = None
        self.ebpf = None
        self.links: list = []
        self.plan: list[tuple[str, Any, Target]] = []
        self.prog_name = ""
        self.target: Target | None = None
        self.streams: list[StreamMap] = []
        self.state_maps: list[tuple[str, Any]] = []
        self.workload_started = False
        self.interrupted = False  # a signal came before or between trio runs
        self.events = 0
        self.lost: dict[int, int] = {}
        self.started = time.monotonic()
        self.ncpus = 1

    # -- set-up ------------------------------------------------------------------------------
    def open_kernel(self) -> None:
        from .backends import open_kernel

        a = self.args
        if a.kernel == "linux":
            if a.workload:
                raise CliError("--workload runs on the simulated kernel only (drop it with --kernel linux)")
            self.sys = open_kernel("linux")
        else:
            if a.cpus < 1:
                raise CliError(f"--cpus must be at least 1 (got {a.cpus})")
            self.sys = open_kernel("sim", arch=a.arch, cpus=a.cpus)

    def load(self) -> None:
        a = self.args
        if not os.path.exists(a.object):
            raise CliError(f"{a.object}: no such file")
        if os.path.isdir(a.object):
            raise CliError(f"{a.object}: is a directory, not a BPF object")
        try:
            from .ebpf import Ebpf
        except ImportError as e:
            raise CliError(f"the loader is not available: {e}") from None
        self.target = parse_target(a)
        try:
            if a.globals:
                from .ebpf import EbpfLoader

                builder = EbpfLoader(self.sys)
                for name, value in parse_globals(a.globals):
                    builder.set_global(name, value)
                self.ebpf = builder.load_file(a.object)
            else:
                self.ebpf = Ebpf.load_file(a.object, kernel=self.sys)
        except CliError:
            raise
        except OSError as e:
            raise CliError(f"{a.object}: {e.strerror or e}") from None
        except Exception as e:
            raise loader_error(e, a.object) from None
        plan = self.plan = self._plan()
        self.prog_name = ", ".join(name for name, _, _ in plan)
        if len(plan) == 1:
            self.target = plan[0][2]
        for name, prog, _ in plan:
            try:
                prog.load()
            except Exception as e:
                raise loader_error(e, f"program {name!r}") from None
        self._open_maps()
        for name, prog, target in plan:
            self.links.append(self._attach(name, prog, target))

    def _plan(self) -> list[tuple[str, Any, Target]]:
        """Which programs to attach where: the one named or fitting the option given, or, with
        neither, every program whose section names its target (kprobe + kretprobe pairs)."""
        a = self.args
        programs = dict(self.ebpf.programs)
        if a.program is None and self.target is None and len(programs) > 1:
            plan = [(n, p, t) for n, p in programs.items() if (t := target_from_section(p)) is not None]
            if not plan:
                raise CliError(f"{a.object} has {len(programs)} programs ({', '.join(programs)}) and their "
                               "sections name no target: choose one with --program and say where to attach it")
            return plan
        name, prog = choose_program(self.ebpf, a.program, self.target, a.object)
        target = self.target or target_from_section(prog)
        if target is None:
            raise CliError(f"program {name!r}: say where to attach it (--kprobe, --kretprobe, --tracepoint or "
                           "--uprobe)")
        kind = program_kind(prog)
        if kind is not None and kind != target.kind:
            raise CliError(f"program {name!r} is a {kind} program; it cannot attach as {target.kind}")
        return [(name, prog, target)]

    def _attach(self, name: str, prog: Any, t: Target):
        try:
            if t.kind in ("kprobe", "kretprobe"):
                return prog.attach(t.args[0], offset=t.offset) if t.offset else prog.attach(t.args[0])
            if t.kind == "tracepoint":
                return prog.attach(*t.args)
            return prog.attach(t.args[0], t.args[1], offset=t.offset) if t.offset else prog.attach(*t.args)
        except Exception as e:
            raise attach_error(e, t, self.sys) from None

    def _open_maps(self) -> None:
        from .event_decode import SampleFormatter, object_types
        from .maps import online_cpus

        sources = object_types(self.args.object)
        wanted = self.args.event_type
        if wanted and not any(b.find(wanted, "STRUCT") for b in sources):
            raise CliError(f"--event-type {wanted}: no struct {wanted} in {self.args.object}'s BTF or debug info")
        self.ncpus = max(online_cpus(self.sys)) + 1
        for name in list(self.ebpf.maps):
            m = self.ebpf.maps[name]
            mtype = int(getattr(m, "map_type", -1))
            if mtype == STREAM_MAP_TYPES["PERF_EVENT_ARRAY"]:
                from .aya_log import LOG_MAP
                from .perf_buffer import PerfEventArray

                perf = PerfEventArray(self.ebpf.take_map(name))
                fmt = (AyaLogFormatter() if name == LOG_MAP else
                       SampleFormatter(sources, padded=True, type_name=self.args.event_type))
                sm = StreamMap(name, "perf", perf, fmt)
                try:
                    sm.buffers = perf.open_all(page_count=self.args.pages)
                except Exception as e:
                    raise loader_error(e, f"map {name!r}") from None
                self.streams.append(sm)
            elif mtype == STREAM_MAP_TYPES["RINGBUF"]:
                from .ringbuf_reader import RingBuf

                rb = RingBuf(self.ebpf.take_map(name))
                self.streams.append(StreamMap(name, "ring", rb,
                                              SampleFormatter(sources, padded=False, type_name=self.args.event_type)))
            elif name != "AYA_LOG_BUF":  # aya-log's scratch buffer is no state of the program
                self.state_maps.append((name, m))

    def start_workload(self) -> None:
        a = self.args
        if self.sys.kind != "sim":
            return
        name = a.workload or DEFAULT_WORKLOAD
        if name == "none":
            return
        start = getattr(self.sys, "start_workload", None)
        if start is None:
            raise CliError("this kernel cannot run workloads")
        try:
            start(name)
        except ValueError as e:
            raise CliError(str(e)) from None
        self.workload_started = True

    def where(self) -> str:
        if len(self.plan) == 1:
            return self.plan[0][2].describe()
        return ", ".join(f"{t.describe()} ({name})" for name, _, t in self.plan)

    # -- maps --------------------------------------------------------------------------------
    def snapshots(self) -> list:
        from .histogram import snapshot_globals, snapshot_map

        out = []
        for name, m in self.state_maps:
            try:
                items = list(m.items())
            except Exception as e:  # a map we cannot read is reported, not fatal
                self.sink.note(f"map {name}: cannot read ({e})")
                continue
            if name.startswith("."):  # global data: .data, .bss, .rodata - one row per variable
                out.append(snapshot_globals(name, items))
            else:
                out.append(snapshot_map(name, items, is_array=int(getattr(m, "map_type", -1)) in _ARRAY_TYPES))
        return out

    def bpftool_view(self) -> None:
        """`bpftool prog show` / `map show` of this run's programs and maps, while they exist."""
        from .cli_bpftool import map_json, map_show_lines, prog_json, prog_show_lines

        progs = [p.fd for _, p, _ in self.plan if getattr(p, "fd", None) is not None]
        maps = [sm.source.fd for sm in self.streams] + [m.fd for _, m in self.state_maps]
        if self.args.json:
            for fd in progs:
                self.sink._emit({"type": "bpftool", "object": "prog", "info": prog_json(self.sys, fd)})
            for fd in maps:
                self.sink._emit({"type": "bpftool", "object": "map", "info": map_json(self.sys, fd)})
            self.sink.flush()
            return
        lines = [line for fd in progs for line in prog_show_lines(self.sys, fd)]
        lines += [line for fd in maps for line in map_show_lines(self.sys, fd)]
        self.sink.out.write("\n" + "\n".join(lines) + "\n")
        self.sink.flush()

    # -- streaming (inside trio) ---------------------------------------------------------------
    async def stream(self) -> None:
        import trio

        from runtime import PerfStream, RingStream, open_reactor

        a = self.args
        async with open_reactor(self.sys) as reactor, trio.open_nursery() as nursery:
            nursery.start_soon(self._signals, nursery.cancel_scope)
            if a.duration is not None:
                nursery.cancel_scope.deadline = trio.current_time() + a.duration
            if a.interval:
                nursery.start_soon(self._interval, a.interval)
            for sm in self.streams:
                if sm.kind == "perf":
                    nursery.start_soon(self._pump_perf, sm, PerfStream(reactor, sm.buffers))
                else:
                    nursery.start_soon(self._pump_ring, sm, RingStream(reactor, sm.source))
            ui = getattr(self.sink, "run", None)
            if ui is not None:
                nursery.start_soon(ui, self, nursery.cancel_scope)

    async def _signals(self, scope) -> None:
        import trio

        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                if self.interrupted:  # the signal came while trio was starting
                    scope.cancel()
                    return
                async for _ in signals:
                    self.interrupted = True
                    scope.cancel()
                    return
        except RuntimeError:  # not the main thread: Ctrl-C cannot reach us here anyway
            import trio

            await trio.sleep_forever()

    async def _interval(self, seconds: float) -> None:
        import trio

        while True:
            await trio.sleep(seconds)
            self.sink.maps(self.snapshots(), final=False)

    async def _pump_perf(self, sm: StreamMap, stream) -> None:
        try:
            async for batch in stream:
                if batch.lost:
                    self.lost[batch.cpu] = self.lost.get(batch.cpu, 0) + batch.lost
                    self.sink.lost(sm.name, batch.cpu, batch.lost)
                fmt = sm.formatter
                for raw in batch.samples:
                    self.events += 1
                    self.sink.event(sm.name, batch.cpu, fmt.decode(raw), fmt)
                self.sink.flush()
        finally:
            stream.close()

    async def _pump_ring(self, sm: StreamMap, stream) -> None:
        fmt = sm.formatter
        try:
            async for raw in stream:
                self.events += 1
                self.sink.event(sm.name, -1, fmt.decode(raw), fmt)
                for more in stream.drain(limit=1024):
                    self.events += 1
                    self.sink.event(sm.name, -1, fmt.decode(more), fmt)
                self.sink.flush()
        finally:
            stream.close()

    # -- teardown ----------------------------------------------------------------------------
    def stop_workload(self) -> None:
        if self.workload_started:
            self.workload_started = False
            self.sys.stop_workload()

    def drain(self) -> None:
        """What is still in the buffers after the stream stopped (the last events)."""
        for sm in self.streams:
            if sm.kind == "perf":
                for buf in sm.buffers:
                    events, lost = buf.read_events()
                    if lost:
                        self.lost[buf.cpu] = self.lost.get(buf.cpu, 0) + lost
                        self.sink.lost(sm.name, buf.cpu, lost)
                    for raw in events:
                        self.events += 1
                        self.sink.event(sm.name, buf.cpu, sm.formatter.decode(raw), sm.formatter)
            else:
                for raw in sm.source.drain(limit=100000):
                    self.events += 1
                    self.sink.event(sm.name, -1, sm.formatter.decode(raw), sm.formatter)
        self.sink.flush()

    def close(self) -> None:
        """Detach, then close maps, programs and (for sim) every descriptor of the process."""
        self.stop_workload()
        for link in self.links:
            try:
                link.detach()
            except Exception:
                pass
        self.links = []
        for sm in self.streams:
            try:
                sm.source.close()
            except Exception:
                pass
        self.streams = []
        if self.ebpf is not None:
            try:
                self.ebpf.close()
            except Exception:
                pass
            self.ebpf = None
        if self.sys is not None and self.sys.kind == "sim":
            self.sys.close_all()


# -- sinks: where events go ----------------------------------------------------------------------
class PlainSink:
    """One line per event on stdout; lost counts and notes on stderr; maps at exit."""

    def __init__(self, out=None, err=None, hist_style: str = "bcc") -> None:
        self.out = out or _sys.stdout
        self.err = err or _sys.stderr
        self.hist_style = hist_style

    def header(self, session: RunSession) -> None:
        maps = ", ".join(f"{s.name} ({s.kind})" for s in session.streams) or "none"
        print(f"Attached {session.prog_name} to {session.where()} on {session.sys.kind}"
              f" ({session.ncpus} CPUs); streaming from {maps}. Ctrl-C to stop.", file=self.err, flush=True)

    def event(self, map_name: str, cpu: int, fields: dict, fmt) -> None:
        where = f"[{cpu}] " if cpu >= 0 else ""
        self.out.write(f"{where}{fmt.text(fields)}\n")

    def lost(self, map_name: str, cpu: int, count: int) -> None:
        print(f"lost {count} events on CPU {cpu} ({map_name})", file=self.err, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def flush(self) -> None:
        self.out.flush()

    def maps(self, snapshots: list, final: bool = True) -> None:
        from .histogram import map_text_lines

        for snap in snapshots:
            self.out.write("\n" + "\n".join(map_text_lines(snap, self.hist_style)) + "\n")
        self.out.flush()

    def summary(self, session: RunSession) -> None:
        lost = sum(session.lost.values())
        per_cpu = ", ".join(f"CPU {c}: {n}" for c, n in sorted(session.lost.items()))
        print(f"{session.events} events, {lost} lost" + (f" ({per_cpu})" if lost else ""), file=self.err, flush=True)


class JsonSink(PlainSink):
    """One JSON object per line: {"type": "event"|"lost"|"map"|"summary", ...}."""

    def __init__(self, out=None, err=None) -> None:
        super().__init__(out, err)
        self.t0 = time.monotonic()

    def _emit(self, obj: dict) -> None:
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def event(self, map_name: str, cpu: int, fields: dict, fmt) -> None:
        from .histogram import jsonable

        obj = {"type": "event", "map": map_name, "ts": round(time.monotonic() - self.t0, 6),
               "event": jsonable({k: v for k, v in fields.items() if not k.startswith("__")})}
        if cpu >= 0:
            obj["cpu"] = cpu
        self._emit(obj)

    def lost(self, map_name: str, cpu: int, count: int) -> None:
        self._emit({"type": "lost", "map": map_name, "cpu": cpu, "count": count})
        self.out.flush()

    def maps(self, snapshots: list, final: bool = True) -> None:
        from .histogram import snapshot_json

        for snap in snapshots:
            obj = snapshot_json(snap)
            obj["final"] = final
            self._emit(obj)
        self.out.flush()

    def summary(self, session: RunSession) -> None:
        self._emit({"type": "summary", "program": session.prog_name, "attach": session.where(),
                    "kernel": session.sys.kind, "events": session.events,
                    "lost": {str(c): n for c, n in sorted(session.lost.items())},
                    "seconds": round(time.monotonic() - session.started, 3)})
        self.out.flush()


def make_sink(args: argparse.Namespace):
    if args.json:
        return JsonSink()
    if not args.no_ui and _sys.stdout.isatty() and _sys.stdin.isatty():
        try:
            from .tail_ui import LiveSink
        except ImportError:
            return PlainSink(hist_style=args.hist_style)
        return LiveSink(hist_style=args.hist_style)
    return PlainSink(hist_style=args.hist_style)


# -- the command ---------------------------------------------------------------------------------
def _reraise_unless_pipe(group: BaseExceptionGroup) -> None:
    """A reader that went away (`bpfload run ... | head`) ends the run; anything else is raised."""
    rest = group.subgroup(lambda e: not isinstance(e, BrokenPipeError | BaseExceptionGroup))
    if rest is not None:
        raise rest.exceptions[0] if len(rest.exceptions) == 1 else rest


def _closed_pipe() -> int:
    # As Unix filters do when their reader closes the pipe: stop quietly. Point stdout at
    # /dev/null so that the interpreter's final flush does not complain either.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, _sys.stdout.fileno())
    os.close(devnull)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    # Imported before attaching so that a program watching openat does not see us import them.
    import trio

    import runtime  # noqa: F401

    from . import event_decode, histogram, perf_buffer, ringbuf_reader  # noqa: F401

    if args.duration is not None and not args.duration > 0:
        raise CliError(f"--duration must be a positive number of seconds (got {args.duration:g})")
    sink = make_sink(args)
    session = RunSession(args, sink)
    # From here until trio takes over (and after it hands back), Ctrl-C / SIGTERM only set a
    # flag: a run stopped early still detaches, prints its maps and exits 0.
    handlers = _defer_signals(session)
    try:
        session.open_kernel()
        session.load()
        session.start_workload()
        sink.header(session)
        try:
            if not session.interrupted:
                trio.run(session.stream)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C while shutting down: still detach and print below
        except BaseExceptionGroup as group:
            _reraise_unless_pipe(group)
            return _closed_pipe()
        except BrokenPipeError:
            return _closed_pipe()
        session.stop_workload()
        session.drain()
        after = getattr(sink, "after_ui", None)
        if after is not None:
            after(session)
        sink.maps(session.snapshots(), final=True)
        if args.bpftool:
            session.bpftool_view()
        sink.summary(session)
        return 0
    except CliError as e:
        log = getattr(e, "verifier_log", None)
        if log and args.verifier_log:
            print(log.rstrip(), file=_sys.stderr)
        raise
    except Exception as e:
        if os.environ.get("BPFLOAD_DEBUG"):
            raise
        raise CliError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")) from None
    finally:
        session.close()
        _restore_signals(handlers)


def _defer_signals(session: RunSession) -> dict:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def note(signum, frame) -> None:
        session.interrupted = True

    return {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@subcommand
def run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="load a BPF object, attach a program, stream its events and print its maps",
                       description="Load OBJ, attach one of its programs, stream what it sends through its perf "
                                   "event array or ring buffer, and print its maps at exit.")
    p.add_argument("object", metavar="OBJ", help="BPF ELF object (.bpf.o)")
    p.add_argument("--program", metavar="NAME", help="program to attach (needed when OBJ has several)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--kprobe", metavar="SYM[+OFF]", help="attach to a kernel function (entry or offset)")
    where.add_argument("--kretprobe", metavar="SYM", help="attach to a kernel function's return")
    where.add_argument("--tracepoint", metavar="CAT/NAME", help="attach to a tracepoint, e.g. syscalls/sys_enter_openat")
    where.add_argument("--uprobe", metavar="PATH:SYM", help="attach to a function of a user binary or library")
    p.add_argument("--kernel", choices=KERNEL_KINDS, default="sim", help="kernel to use (default: sim)")
    p.add_argument("--arch", choices=ARCHES, default="x86_64", help="simulated kernel's arch")
    p.add_argument("--cpus", type=int, default=2, help="simulated kernel's CPU count (default: 2)")
    p.add_argument("--workload", metavar="NAME",
                   help=f"what the simulated system does: idle, shell, storm, none (default: {DEFAULT_WORKLOAD})")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--interval", type=float, metavar="S", help="also print the maps every S seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per line (events, lost, maps, summary)")
    p.add_argument("--no-ui", action="store_true", help="plain line-per-event output even on a terminal")
    p.add_argument("--pages", type=int, default=DEFAULT_PAGES, help=f"perf buffer pages per CPU (default: "
                                                                    f"{DEFAULT_PAGES})")
    p.add_argument("--event-type", metavar="STRUCT", help="BTF/DWARF struct the events are (default: guessed by size)")
    p.add_argument("--hist-style", choices=("bcc", "bpftrace"), default="bcc", help="log2 histogram layout")
    p.add_argument("--global", dest="globals", action="append", metavar="NAME=VALUE", default=[],
                   help="set a global variable before load (Aya's set_global), e.g. target_tgid=42")
    p.add_argument("--verifier-log", action="store_true",
                   help="when the verifier refuses a program, print its whole log (stderr) before the one-line error")
    p.add_argument("--bpftool", action="store_true",
                   help="at exit, also show the run's programs and maps as `bpftool prog/map show` does")
    p.set_defaults(func=cmd_run)
