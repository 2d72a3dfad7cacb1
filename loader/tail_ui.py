"""The live tail screen of `bpfload run`: a pure function from TailState to a rich renderable.

The streaming code only updates a TailState; ``render(state)`` draws it (events per second in
total and per CPU, lost records per CPU, buffer fill, the last N decoded events, the program's
maps as tables or histograms, the filter and pause state). Tests call render() directly.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .histogram import log2_hist_lines

RATE_WINDOW_S = 1.0
HISTORY = 500  # events kept for a filter to apply to; the screen shows the last max_events
MAP_ROWS = 10
RING_CPU = -1  # the "CPU" of ring buffer records (one buffer shared by every CPU)


@dataclass
class TailState:
    title: str
    ncpus: int
    max_events: int = 20
    events: deque = field(default_factory=deque)  # (timestamp, cpu, text)
    total: int = 0
    per_cpu: dict[int, int] = field(default_factory=dict)
    lost_per_cpu: dict[int, int] = field(default_factory=dict)
    fill_per_cpu: dict[int, float] = field(default_factory=dict)  # 0..1 of the buffer in use
    maps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # name -> rows of (key, value)
    histograms: dict[str, list[int]] = field(default_factory=dict)
    filter: str = ""
    paused: bool = False
    editing: bool = False  # typing a filter after "/"
    done: bool = False  # the run is over: no key hints
    ring_fill: dict[str, float] = field(default_factory=dict)  # ring buffer map name -> 0..1 in use
    notes: deque = field(default_factory=lambda: deque(maxlen=3))  # short messages (map read errors)
    started: float = field(default_factory=time.monotonic)
    _recent: deque = field(default_factory=deque)  # (timestamp, cpu) within the rate window

    def add_event(self, cpu: int, text: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.total += 1
        self.per_cpu[cpu] = self.per_cpu.get(cpu, 0) + 1
        self._recent.append((now, cpu))
        if self.paused or (self.filter and self.filter not in text):
            return
        self.events.append((now, cpu, text))
        while len(self.events) > max(self.max_events, HISTORY):
            self.events.popleft()

    def add_lost(self, cpu: int, count: int) -> None:
        self.lost_per_cpu[cpu] = self.lost_per_cpu.get(cpu, 0) + count

    def key(self, ch: str) -> str | None:
        """Apply one key press; returns "quit" when the user asks to stop.

        q quits, p toggles pause, / starts typing a filter (Enter keeps it, Esc clears it,
        Backspace edits), c clears the events shown.
        """
        if self.editing:
            if ch in ("\r", "\n"):
                self.editing = False
                self.apply_filter()
            elif ch == "\x1b":
                self.editing = False
                self.filter = ""
            elif ch in ("\x7f", "\b"):
                self.filter = self.filter[:-1]
            elif ch.isprintable():
                self.filter += ch
            return None
        if ch in ("q", "Q", "\x03"):
            return "quit"
        if ch in ("p", "P", " "):
            self.paused = not self.paused
        elif ch == "/":
            self.editing = True
            self.filter = ""
        elif ch == "c":
            self.events.clear()
        elif ch == "\x1b":
            self.filter = ""
        return None

    def apply_filter(self) -> None:
        """Drop the events shown that the new filter hides (later ones are filtered on arrival)."""
        if self.filter:
            kept = [e for e in self.events if self.filter in e[2]]
            self.events.clear()
            self.events.extend(kept)

    def set_maps(self, snapshots) -> None:
        """Show the program's maps: MapSnapshots (loader.histogram) as tables or histograms."""
        from .histogram import format_value

        maps: dict[str, list[tuple[str, str]]] = {}
        hists: dict[str, list[int]] = {}
        for snap in snapshots:
            if snap.kind == "hist":
                hists[snap.name] = list(snap.counts)
            else:
                maps[snap.name] = [(format_value(k), format_value(v)) for k, v in snap.rows[:MAP_ROWS]]
        self.maps, self.histograms = maps, hists

    def rates(self, now: float | None = None) -> tuple[float, dict[int, float]]:
        """Events per second over the last window, in total and per CPU."""
        now = time.monotonic() if now is None else now
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()
        span = min(RATE_WINDOW_S, max(now - self.started, 1e-9))
        per: dict[int, float] = {}
        for _, cpu in self._recent:
            per[cpu] = per.get(cpu, 0) + 1
        return len(self._recent) / span, {c: n / span for c, n in per.items()}


def _fill_bar(frac: float, width: int = 10) -> str:
    n = max(0, min(width, round(frac * width)))
    return "█" * n + "·" * (width - n)


def compact_hist_lines(counts: list[int]) -> list[str]:
    """bcc's layout without the leading empty slots: a live screen has no rows to spare."""
    lines = log2_hist_lines(counts)
    if len(lines) <= 1:
        return lines
    first = next((i for i, c in enumerate(counts) if c and i > 0), 1)
    return [lines[0], *lines[first:]]


def screen_rows(state: TailState) -> int:
    """Rows the screen needs besides the events: status, CPU table, rings, maps, borders."""
    rows = 2 + 1 + 1 + state.ncpus + len(state.ring_fill) + 2 + len(state.notes) + 1
    rows += sum(len(r) + 2 for r in state.maps.values())
    rows += sum(len(compact_hist_lines(c)) + 2 for c in state.histograms.values())
    return rows


def render(state: TailState, now: float | None = None):
    total_rate, per_rate = state.rates(now)
    cpus = Table(title=None, expand=False, box=None, padding=(0, 1))
    for col in ("cpu", "events", "ev/s", "lost", "buffer"):
        cpus.add_column(col, justify="right" if col != "buffer" else "left")
    for cpu in range(state.ncpus):
        cpus.add_row(str(cpu), str(state.per_cpu.get(cpu, 0)), f"{per_rate.get(cpu, 0.0):.0f}",
                     str(state.lost_per_cpu.get(cpu, 0)), _fill_bar(state.fill_per_cpu.get(cpu, 0.0)))
    if RING_CPU in state.per_cpu:  # ring buffer records: one buffer for all CPUs, no CPU number
        fill = max(state.ring_fill.values(), default=0.0)
        cpus.add_row("ring", str(state.per_cpu[RING_CPU]), f"{per_rate.get(RING_CPU, 0.0):.0f}", "-", _fill_bar(fill))
    status = Text()
    status.append(f"{state.total} events", style="bold")
    status.append(f"  {total_rate:.0f}/s")
    lost = sum(state.lost_per_cpu.values())
    status.append(f"  lost {lost}", style="bold red" if lost else "")
    if state.editing:
        status.append(f"  filter: {state.filter}▏", style="bold yellow")
    elif state.filter:
        status.append(f"  filter: {state.filter!r}", style="yellow")
    if state.paused:
        status.append("  PAUSED", style="bold yellow")
    events = Text()
    shown = list(state.events)[-state.max_events:] if state.max_events > 0 else []
    for _, cpu, text in shown:
        if cpu != RING_CPU:
            events.append(f"[{cpu}] ", style="dim")
        events.append(text + "\n")
    parts = [status, cpus]
    for name, frac in state.ring_fill.items():
        parts.append(Text(f"ring {name}: {_fill_bar(frac)} {frac * 100:.0f}%"))
    parts.append(Panel(events, title="events", border_style="blue"))
    for name, rows in state.maps.items():
        table = Table(title=name, box=None, padding=(0, 1))
        table.add_column("key")
        table.add_column("value", justify="right")
        for key, value in rows:
            table.add_row(key, value)
        parts.append(table)
    for name, counts in state.histograms.items():
        parts.append(Panel(Text("\n".join(compact_hist_lines(counts))), title=name))
    for note in state.notes:
        parts.append(Text(note, style="red"))
    if not state.done:
        parts.append(Text("q quit · p pause · / filter · Esc clear filter · c clear", style="dim"))
    return Panel(Group(*parts), title=state.title, border_style="green")


# -- the live sink of `bpfload run` on a terminal ----------------------------------------------------

REFRESH_S = 0.1
MAPS_REFRESH_S = 1.0


class LiveSink:
    """Feeds a TailState from the stream and redraws it with rich.live; reads keys from stdin.

    The stream calls event()/lost() (cheap: they only update state); ``run`` is a trio task
    that redraws ten times a second, re-reads the maps once a second and handles keys. At the
    end the plain sink prints the final maps below the last screen.
    """

    def __init__(self, hist_style: str = "bcc", console=None) -> None:
        from rich.console import Console

        from .cli_run import PlainSink

        self.console = console or Console()
        self.plain = PlainSink(hist_style=hist_style)
        self.state: TailState | None = None
        self.session = None

    # -- what the stream calls ----------------------------------------------------------------
    def header(self, session) -> None:
        self.session = session
        self.state = TailState(f"bpfload run · {session.prog_name} · {session.where()} · {session.sys.kind}",
                               ncpus=session.ncpus)

    def event(self, map_name: str, cpu: int, fields: dict, fmt) -> None:
        self.state.add_event(cpu, fmt.text(fields))  # cpu is RING_CPU (-1) for ring buffer records

    def lost(self, map_name: str, cpu: int, count: int) -> None:
        self.state.add_lost(cpu, count)

    def note(self, text: str) -> None:
        if self.state is not None:
            self.state.notes.append(text)

    def flush(self) -> None:
        pass

    def maps(self, snapshots: list, final: bool = True) -> None:
        if final:
            self.plain.maps(snapshots, final=True)
        elif self.state is not None:
            self.state.set_maps(snapshots)

    def summary(self, session) -> None:
        self.plain.summary(session)

    def after_ui(self, session) -> None:
        """The live screen lives on the alternate screen and vanishes at exit: leave its last
        frame on the normal screen, so a `--duration` run still shows what it saw."""
        if self.state is not None:
            self.state.max_events = min(self.state.max_events, 20)
            self.state.done = True
            self.console.print(render(self.state))

    # -- the screen --------------------------------------------------------------------------------
    def _fill(self) -> None:
        """Buffer fill: how far the producers are ahead of us, per CPU and per ring buffer."""
        for sm in self.session.streams:
            if sm.kind == "perf":
                for buf in sm.buffers:
                    try:
                        used = buf.data_head - buf.data_tail
                    except (TypeError, ValueError, AttributeError):
                        continue
                    self.state.fill_per_cpu[buf.cpu] = min(1.0, used / buf.size) if buf.size else 0.0
            else:
                try:
                    used = sm.source.producer_pos - sm.source.consumer_pos
                    self.state.ring_fill[sm.name] = min(1.0, used / sm.source.max_entries)
                except (TypeError, ValueError, AttributeError):
                    continue

    async def run(self, session, scope) -> None:
        import trio
        from rich.live import Live

        state = self.state
        keys = _Keyboard()
        try:
            with Live(render(state), console=self.console, auto_refresh=False, screen=True,
                      redirect_stdout=False, redirect_stderr=False) as live:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(keys.pump, state, scope, self._redraw, live)
                    next_maps = 0.0
                    while True:
                        now = trio.current_time()
                        if now >= next_maps:
                            state.set_maps(session.snapshots())
                            next_maps = now + MAPS_REFRESH_S
                        self._fill()
                        state.max_events = max(3, self.console.size.height - screen_rows(state))
                        live.update(render(state), refresh=True)
                        await trio.sleep(REFRESH_S)
        finally:
            keys.restore()

    def _redraw(self, live) -> None:
        live.update(render(self.state), refresh=True)


class _Keyboard:
    """stdin in cbreak mode (keys one at a time, no echo), restored on exit."""

    def __init__(self) -> None:
        import sys

        self.fd = sys.stdin.fileno()
        self.saved = None
        try:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        except Exception:  # not a terminal: no keys, the screen still works
            self.saved = None

    async def pump(self, state: TailState, scope, redraw, live) -> None:
        import os

        import trio

        if self.saved is None:
            return
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            data = os.read(self.fd, 64)
            if not data:
                return
            for ch in data.decode(errors="ignore"):
                if state.key(ch) == "quit":
                    scope.cancel()
                    return
            redraw(live)

    def restore(self) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            self.saved = None
