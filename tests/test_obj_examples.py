"""examples/syscall_counter.py, the write-up's application: it runs on kernel_sim, logs the
program's aya-log records and prints count tables that agree with the kernel's map."""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("syscall_counter_app", REPO / "examples" / "syscall_counter.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_count_table_sorted_by_count():
    app = load_script()
    text = app.count_table({0: 5, 257: 9, 3: 5}, {0: "read", 257: "openat", 3: "close"})
    rows = [line.split() for line in text.splitlines()[1:]]
    assert rows == [["openat", "257", "9"], ["read", "0", "5"], ["close", "3", "5"]]


def test_application_logs_and_prints_tables(capsys, caplog):
    app = load_script()
    with caplog.at_level(logging.DEBUG):
        assert app.main(["--duration", "2.5", "--interval", "1", "--workload", "shell"]) == 0
    out = capsys.readouterr().out
    tables = []
    for block in out.split("SYSCALL")[1:]:
        rows = {}
        for line in block.strip().splitlines()[1:]:
            name, nr, count = line.split()
            rows[int(nr)] = (name, int(count))
        tables.append(rows)
    assert tables and tables[-1] and all(count > 0 for _, count in tables[-1].values())
    for before, after in zip(tables, tables[1:], strict=False):  # counters only grow
        assert all(after[nr][1] >= n for nr, (_, n) in before.items())
    known = {"read", "write", "openat", "close", "nanosleep", "clone", "execve", "exit_group", "getpid", "uname",
             "mmap", "exit", "ioctl", "connect", "unlinkat",
             "bpf", "perf_event_open"}  # the application's own syscalls count too, as on Linux
    assert {name for name, _ in tables[-1].values()} <= known
    logged = [r for r in caplog.records if r.getMessage().startswith("syscall ")]
    assert logged and all(r.levelno == logging.INFO for r in logged)  # info!() records
    for r in logged:
        assert re.fullmatch(r"syscall \d+ called, \d+ times", r.getMessage())
