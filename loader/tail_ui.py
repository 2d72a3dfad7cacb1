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
        while len(self.events) > self.max_events:
            self.events.popleft()

    def add_lost(self, cpu: int, count: int) -> None:
        self.lost_per_cpu[cpu] = self.lost_per_cpu.get(cpu, 0) + count

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


def render(state: TailState, now: float | None = None):
    total_rate, per_rate = state.rates(now)
    cpus = Table(title=None, expand=False, box=None, padding=(0, 1))
    for col in ("cpu", "events", "ev/s", "lost", "buffer"):
        cpus.add_column(col, justify="right" if col != "buffer" else "left")
    for cpu in range(state.ncpus):
        cpus.add_row(str(cpu), str(state.per_cpu.get(cpu, 0)), f"{per_rate.get(cpu, 0.0):.0f}",
                     str(state.lost_per_cpu.get(cpu, 0)), _fill_bar(state.fill_per_cpu.get(cpu, 0.0)))
    status = Text()
    status.append(f"{state.total} events", style="bold")
    status.append(f"  {total_rate:.0f}/s")
    lost = sum(state.lost_per_cpu.values())
    status.append(f"  lost {lost}", style="bold red" if lost else "")
    if state.filter:
        status.append(f"  filter: {state.filter!r}", style="yellow")
    if state.paused:
        status.append("  PAUSED", style="bold yellow")
    events = Text()
    for _, cpu, text in state.events:
        events.append(f"[{cpu}] ", style="dim")
        events.append(text + "\n")
    parts = [status, cpus, Panel(events, title="events", border_style="blue")]
    for name, rows in state.maps.items():
        table = Table(title=name, box=None, padding=(0, 1))
        table.add_column("key")
        table.add_column("value", justify="right")
        for key, value in rows:
            table.add_row(key, value)
        parts.append(table)
    for name, counts in state.histograms.items():
        parts.append(Panel(Text("\n".join(log2_hist_lines(counts))), title=name))
    parts.append(Text("q quit · p pause · / filter", style="dim"))
    return Panel(Group(*parts), title=state.title, border_style="green")
