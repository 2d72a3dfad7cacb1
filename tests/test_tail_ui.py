"""The tail UI is a pure function of its state; histograms print as bcc and bpftrace print them."""

from __future__ import annotations

from rich.console import Console

from loader.histogram import bpftrace_hist_lines, log2_hist_lines
from loader.tail_ui import TailState, render


def _screen(state: TailState, now: float) -> str:
    console = Console(width=100, record=True, color_system=None)
    console.print(render(state, now=now))
    return console.export_text()


def test_bcc_log2_histogram_layout():
    lines = log2_hist_lines([0, 1, 0, 5, 20], "usecs")
    assert lines[0] == "     usecs               : count     distribution"
    assert lines[1] == "         0 -> 1          : 1        |**                                      |"
    assert lines[4] == "         8 -> 15         : 20       |****************************************|"
    assert log2_hist_lines([0, 0, 0]) == []


def test_bpftrace_histogram_labels():
    lines = bpftrace_hist_lines([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4])
    assert lines == ["[1K, 2K)                   4 |" + "@" * 52 + "|"]


def test_rates_events_lost_and_fill_are_rendered():
    state = TailState("opensnoop", ncpus=2, max_events=3)
    t0 = state.started
    for i in range(10):
        state.add_event(i % 2, f"pid={i} file=/etc/passwd", now=t0 + 0.5 + i * 0.01)
    state.add_lost(1, 7)
    state.fill_per_cpu = {0: 0.5, 1: 1.0}
    screen = _screen(state, now=t0 + 1.0)
    assert "10 events  10/s  lost 7" in screen
    assert "pid=9 file=/etc/passwd" in screen and "pid=6 " not in screen  # only the last 3 kept
    assert "█████·····" in screen and "██████████" in screen


def test_filter_and_pause_keep_counting_but_hide_events():
    state = TailState("t", ncpus=1)
    state.filter = "passwd"
    state.add_event(0, "file=/etc/passwd")
    state.add_event(0, "file=/etc/hosts")
    state.paused = True
    state.add_event(0, "file=/etc/passwd")
    screen = _screen(state, now=state.started + 1)
    assert state.total == 3 and len(state.events) == 1
    assert "filter: 'passwd'" in screen and "PAUSED" in screen and "/etc/hosts" not in screen


def test_maps_and_histograms_are_drawn():
    state = TailState("t", ncpus=1)
    state.maps = {"counts": [("bash", "12")]}
    state.histograms = {"latency": [0, 2, 4]}
    screen = _screen(state, now=state.started + 1)
    assert "counts" in screen and "bash" in screen and "12" in screen
    assert "2 -> 3" in screen and "latency" in screen


def test_keys_pause_filter_and_quit():
    state = TailState("t", ncpus=1)
    for text in ("file=/etc/passwd", "file=/etc/hosts", "file=/etc/passwd2"):
        state.add_event(0, text)
    assert state.key("p") is None and state.paused
    state.key("p")
    assert not state.paused
    for ch in "/hostz":
        state.key(ch)
    assert state.editing and state.filter == "hostz"
    screen = _screen(state, now=state.started + 1)
    assert "filter: hostz▏" in screen
    state.key("\x7f")  # backspace
    state.key("\r")
    assert not state.editing and state.filter == "host"
    assert [e[2] for e in state.events] == ["file=/etc/hosts"]  # shown events filtered at once
    state.add_event(0, "file=/etc/passwd")
    state.add_event(0, "file=/etc/hosts.allow")
    assert [e[2] for e in state.events] == ["file=/etc/hosts", "file=/etc/hosts.allow"]
    state.key("\x1b")
    assert state.filter == ""
    state.key("/")
    assert state.key("q") is None and state.filter == "q"  # typing, not quitting
    state.key("\x1b")
    assert not state.editing and state.key("q") == "quit"


def test_map_snapshots_and_ring_fill_are_drawn():
    from loader.histogram import snapshot_map

    state = TailState("t", ncpus=2)
    state.set_maps([snapshot_map("counts", [(10, 3), (11, 9)]),
                    snapshot_map("lat_hist", [(i, v) for i, v in enumerate([0, 2, 6, 1])], is_array=True)])
    state.ring_fill = {"rb": 0.3}
    screen = _screen(state, now=state.started + 1)
    assert state.maps["counts"] == [("11", "9"), ("10", "3")]
    assert state.histograms["lat_hist"] == [0, 2, 6, 1]
    assert "ring rb: ███······· 30%" in screen and "4 -> 7" in screen


def test_map_tables_sort_counts_and_struct_counters_and_cut_long_tables():
    import json

    from loader.histogram import jsonable, map_text_lines, snapshot_json, snapshot_map

    snap = snapshot_map("counts", [(k, k * 3 % 7) for k in range(40)])
    lines = map_text_lines(snap, limit=5)
    assert lines[:2] == ["counts:", "  KEY       VALUE"]
    assert [int(line.split()[1]) for line in lines[2:7]] == [6, 6, 6, 6, 6]
    assert lines[-1] == "  ... 35 more"
    by_field = snapshot_map("procs", [(1, {"count": 2, "comm": "a"}), (2, {"count": 9, "comm": "b"})])
    assert [k for k, _ in by_field.rows] == [2, 1]
    assert "count=9 comm=b" in map_text_lines(by_field)[2]
    zeros = snapshot_map("arr", [(0, 0), (1, 5), (2, 0)], is_array=True)
    assert zeros.rows == [(1, 5)]
    assert map_text_lines(snapshot_map("empty", [])) == ["empty: (empty)"]
    hist = snapshot_map("lat_hist", [(0, 0), (1, 1), (2, 3)], is_array=True)
    assert hist.kind == "hist" and map_text_lines(hist, "bpftrace")[0] == "@lat_hist:"
    obj = snapshot_json(snapshot_map("m", [(b"\x01\x02", {"comm": "x", "v": [1, 2]})]))
    assert json.loads(json.dumps(obj))["entries"] == [{"key": "0102", "value": {"comm": "x", "v": [1, 2]}}]
    assert jsonable((1, b"\xff", {2: None})) == [1, "ff", {"2": None}]


def test_long_cells_are_cut_for_display():
    from loader.histogram import format_value

    assert format_value(bytes(100)) == "00" * 32 + "… (100 bytes)"
    assert format_value(list(range(40))).endswith(", … (40 items)]")
    assert format_value(b"\x01\x02") == "0102"


def test_ring_buffer_records_have_their_own_row():
    from loader.tail_ui import RING_CPU

    state = TailState("execsnoop", ncpus=2)
    state.add_event(RING_CPU, "comm=cat filename=/bin/cat")
    state.ring_fill = {"rb": 0.5}
    screen = _screen(state, now=state.started + 1)
    assert "ring       1" in screen and "[-1]" not in screen and "comm=cat filename=/bin/cat" in screen
