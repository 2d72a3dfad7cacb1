"""Text renderings of map contents the way bcc's tools and bpftrace print them.

A log2 histogram is an array (or hash) of counts where slot i counts values v with
floor(log2(v)) + 1 == i (slot 0 holds v == 0), as bcc's bpf_log2l buckets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


def _stars(value: int, value_max: int, width: int) -> str:
    if value_max <= 0:
        return ""
    n = min(width, value * width // value_max)
    text = "*" * n
    if value > value_max:
        text = text[:-1] + "+"
    return text


def log2_hist_lines(counts: Sequence[int], unit: str = "value", width: int = 40) -> list[str]:
    """bcc's print_log2_hist layout: "     usecs               : count     distribution"."""
    idx_max = max((i for i, v in enumerate(counts) if v > 0), default=-1)
    if idx_max <= 0:
        return []
    value_max = max(counts)
    if idx_max <= 32:
        header = f"     {unit:<19} : count     distribution"
        row = "{low:>10} -> {high:<10} : {count:<8} |{bar:<{w}}|"
    else:
        header = f"{unit:>29} : count     distribution"
        row = "{low:>20} -> {high:<20} : {count:<8} |{bar:<{w}}|"
    lines = [header]
    for i in range(1, idx_max + 1):
        low, high = (1 << i) >> 1, (1 << i) - 1
        if low == high:
            low -= 1
        lines.append(row.format(low=low, high=high, count=counts[i], bar=_stars(counts[i], value_max, width), w=width))
    return lines


def _human(n: int) -> str:
    for suffix, scale in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


def bpftrace_hist_lines(counts: Sequence[int], width: int = 52) -> list[str]:
    """bpftrace's hist() layout: "[4, 8)   12 |@@@@     |"."""
    nz = [i for i, v in enumerate(counts) if v > 0]
    if not nz:
        return []
    value_max = max(counts)
    lines = []
    for i in range(nz[0], nz[-1] + 1):
        if i == 0:
            label = "[0]"
        elif i == 1:
            label = "[1]"
        else:
            label = f"[{_human(1 << (i - 1))}, {_human(1 << i)})"
        bar = "@" * (counts[i] * width // value_max if value_max else 0)
        lines.append(f"{label:<20}{counts[i]:>8} |{bar:<{width}}|")
    return lines


# -- map snapshots: what `bpfload run` prints for a program's maps -------------------------------

HIST_NAME_HINTS = ("hist", "dist", "slot", "lat", "log2")
MAX_HIST_SLOTS = 128
TABLE_ROWS = 30
MAX_CELL_BYTES = 32  # a table cell shows this much of a bytes value (JSON output has it all)
MAX_CELL_ITEMS = 16
COUNT_FIELDS = ("count", "counts", "calls", "hits", "total", "bytes", "value")


@dataclass
class MapSnapshot:
    """A map's contents at one moment, shaped for printing: a table of rows or a histogram."""

    name: str
    kind: str  # "table" or "hist"
    rows: list[tuple[Any, Any]] = field(default_factory=list)  # (key, value), sorted for display
    counts: list[int] = field(default_factory=list)  # hist: count per log2 slot
    total_rows: int = 0


def _combine(value: Any) -> Any:
    """Per-CPU values (a list per CPU) shown as their sum when they are numbers."""
    if isinstance(value, list | tuple) and value and all(isinstance(v, int) for v in value):
        return sum(value)
    return value


def _is_int_key(key: Any) -> bool:
    return isinstance(key, int) and not isinstance(key, bool)


def snapshot_map(name: str, items: Iterable[tuple[Any, Any]], *, is_array: bool = False) -> MapSnapshot:
    """Read ``items`` once and decide how to show them.

    A histogram is what bcc's and bpftrace's tools keep: an array (or hash) indexed by log2
    slot with integer counts, named like one (hist, dist, slot, lat). Everything else is a
    table, sorted by value (largest first) when the values are counts.
    """
    rows = [(k, _combine(v)) for k, v in items]
    int_values = all(isinstance(v, int) for _, v in rows)
    if (rows and int_values and all(_is_int_key(k) and 0 <= k < MAX_HIST_SLOTS for k, _ in rows)
            and any(h in name.lower() for h in HIST_NAME_HINTS)):
        counts = [0] * (max(k for k, _ in rows) + 1)
        for k, v in rows:
            counts[k] += v
        return MapSnapshot(name, "hist", counts=counts, total_rows=len(rows))
    if is_array and int_values:
        rows = [(k, v) for k, v in rows if v]  # an array's zero slots are noise in a count table
    if int_values:
        rows.sort(key=lambda kv: (-kv[1], str(kv[0])))
    elif rows and all(isinstance(v, dict) for _, v in rows):
        field_name = next((f for f in COUNT_FIELDS if all(isinstance(v.get(f), int) for _, v in rows)), None)
        if field_name is not None:  # struct values with a counter: largest first
            rows.sort(key=lambda kv: (-kv[1][field_name], str(kv[0])))
    return MapSnapshot(name, "table", rows=rows, total_rows=len(rows))


def format_value(value: Any) -> str:
    """A key or value as one short cell: ints, C strings, struct fields as k=v, bytes as hex."""
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if len(data) > MAX_CELL_BYTES:
            return f"{data[:MAX_CELL_BYTES].hex()}… ({len(data)} bytes)"
        return data.hex()
    if isinstance(value, dict):
        return " ".join(f"{k}={format_value(v)}" for k, v in value.items() if not str(k).startswith("__"))
    if isinstance(value, list | tuple):
        if len(value) > MAX_CELL_ITEMS:
            return "[" + ", ".join(format_value(v) for v in value[:MAX_CELL_ITEMS]) + f", … ({len(value)} items)]"
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def map_text_lines(snap: MapSnapshot, style: str = "bcc", limit: int = TABLE_ROWS) -> list[str]:
    """The map as text: a log2 histogram in bcc's or bpftrace's layout, or a KEY/VALUE table."""
    if snap.kind == "hist":
        body = bpftrace_hist_lines(snap.counts) if style == "bpftrace" else log2_hist_lines(snap.counts)
        if style == "bpftrace":
            return [f"@{snap.name}:", *body] if body else [f"@{snap.name}: (empty)"]
        return [f"{snap.name}:", *body] if body else [f"{snap.name}: (empty)"]
    if not snap.rows:
        return [f"{snap.name}: (empty)"]
    shown = snap.rows[:limit]
    keys = [format_value(k) for k, _ in shown]
    width = max(8, *(len(k) for k in keys))
    lines = [f"{snap.name}:", f"  {'KEY':<{width}}  VALUE"]
    lines += [f"  {k:<{width}}  {format_value(v)}" for k, (_, v) in zip(keys, shown, strict=True)]
    if snap.total_rows > len(shown):
        lines.append(f"  ... {snap.total_rows - len(shown)} more")
    return lines


def jsonable(value: Any) -> Any:
    """A value json.dumps accepts: bytes as hex, tuples as lists, dict keys as strings."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def snapshot_json(snap: MapSnapshot) -> dict[str, Any]:
    if snap.kind == "hist":
        return {"type": "map", "name": snap.name, "kind": "hist", "counts": snap.counts}
    return {"type": "map", "name": snap.name, "kind": "table",
            "entries": [{"key": jsonable(k), "value": jsonable(v)} for k, v in snap.rows]}


def snapshot_globals(name: str, items: Iterable[tuple[Any, Any]]) -> MapSnapshot:
    """A global-data map (.data, .bss, .rodata): one row per variable, in declaration order."""
    rows: list[tuple[Any, Any]] = []
    for _key, value in items:
        if isinstance(value, dict):
            rows.extend((var, v) for var, v in value.items())
        else:
            rows.append((_key, value))
    return MapSnapshot(name, "table", rows=rows, total_rows=len(rows))
