"""Text renderings of map contents the way bcc's tools and bpftrace print them.

A log2 histogram is an array (or hash) of counts where slot i counts values v with
floor(log2(v)) + 1 == i (slot 0 holds v == 0), as bcc's bpf_log2l buckets them.
"""

from __future__ import annotations

from collections.abc import Sequence


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
