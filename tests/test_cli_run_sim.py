"""`bpfload run` on the simulated kernel: the README command, JSON, ring buffers, histograms, logs.

The first test is the acceptance test of the README's main command, run as a user runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loader.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SHELL_COMMS = {"bash", "cat", "ls", "grep"}  # kernel_sim/workloads.py "shell"


def bpfload(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("bpfload")
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; from loader.cli import main; sys.exit(main())"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, cwd=REPO, timeout=timeout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_readme_main_command():
    """`bpfload run examples/opensnoop.bpf.o --kprobe do_sys_openat2 --duration 3`, verbatim."""
    res = bpfload("run", "examples/opensnoop.bpf.o", "--kprobe", "do_sys_openat2", "--duration", "3")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) >= 5
    assert all(line.startswith(("[0] ", "[1] ")) and "pid=" in line and "comm=" in line for line in lines)
    assert any("filename=/etc/passwd" in line for line in lines)
    assert "Attached opensnoop to kprobe do_sys_openat2 on sim" in res.stderr
    assert f"{len(lines)} events, 0 lost" in res.stderr


def test_json_events_have_pid_comm_filename(capsys):
    assert main(["run", str(EXAMPLES / "opensnoop.bpf.o"), "--kprobe", "do_sys_openat2", "--duration", "2",
                 "--json"]) == 0
    objs = json_lines(capsys.readouterr().out)
    events = [o for o in objs if o["type"] == "event"]
    assert events and all(o["map"] == "events" and o["cpu"] in (0, 1) for o in events)
    assert {e["event"]["comm"] for e in events} <= SHELL_COMMS
    assert all(e["event"]["pid"] > 1 and e["event"]["filename"].startswith("/") for e in events)
    assert all("__pad" not in e["event"] for e in events)
    summary = objs[-1]
    assert summary["type"] == "summary" and summary["events"] == len(events) and summary["kernel"] == "sim"


def test_a_run_leaves_no_descriptor_behind(capsys):
    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    argv = ["run", str(EXAMPLES / "opensnoop.bpf.o"), "--kprobe", "do_sys_openat2", "--duration", "0.5", "--json"]
    assert main(argv) == 0  # the first run imports modules (and whatever they keep open)
    before = fds()
    assert main(argv) == 0
    capsys.readouterr()
    assert fds() - before == set()


def test_ring_buffer_tracepoint_sees_the_workload_exec(capsys):
    assert main(["run", str(EXAMPLES / "execsnoop.bpf.o"), "--duration", "2", "--json"]) == 0
    events = [o["event"] for o in json_lines(capsys.readouterr().out) if o["type"] == "event"]
    assert events
    assert {(e["comm"], e["filename"]) for e in events} <= {("cat", "/bin/cat"), ("ls", "/bin/ls"),
                                                           ("grep", "/usr/bin/grep")}


def test_kprobe_and_kretprobe_pair_fill_a_log2_histogram(capsys):
    """latency.bpf.o: both programs attach from their sections; the histogram prints as bcc's."""
    assert main(["run", str(EXAMPLES / "latency.bpf.o"), "--duration", "1.5", "--no-ui"]) == 0
    out, err = capsys.readouterr()
    assert "kprobe vfs_read (" in err and "kretprobe vfs_read (" in err
    assert "     value               : count     distribution" in out
    rows = [line for line in out.splitlines() if "->" in line and ":" in line]
    assert sum(int(r.split(":")[1].split("|")[0]) for r in rows) > 0


def test_hist_as_json_and_bpftrace_style(capsys):
    assert main(["run", str(EXAMPLES / "latency.bpf.o"), "--duration", "1", "--json"]) == 0
    maps = [o for o in json_lines(capsys.readouterr().out) if o["type"] == "map"]
    hist = [m for m in maps if m["kind"] == "hist"]
    assert hist and sum(hist[0]["counts"]) > 0 and hist[0]["final"] is True
    assert main(["run", str(EXAMPLES / "latency.bpf.o"), "--duration", "1", "--no-ui",
                 "--hist-style", "bpftrace"]) == 0
    out = capsys.readouterr().out
    assert "@hist:" in out and " |@" in out


def test_the_write_up_application_logs_and_prints_counts_every_interval(capsys):
    assert main(["run", str(EXAMPLES / "syscall_counter.bpf.o"), "--kprobe", "x64_sys_call", "--duration", "1.3",
                 "--interval", "0.5", "--json"]) == 0
    objs = json_lines(capsys.readouterr().out)
    logs = [o["event"] for o in objs if o["type"] == "event" and o["map"] == "AYA_LOGS"]
    assert logs and all(e["level"] == "INFO" and e["module"] == "syscall_counter" for e in logs)
    assert all(re.fullmatch(r"syscall \d+ called, \d+ times", e["message"]) for e in logs)
    tables = [o for o in objs if o["type"] == "map" and o["name"] == "SYSCALL_COUNTS"]
    assert len(tables) >= 3 and tables[-1]["final"] and not tables[0]["final"]
    counts = {e["key"]: e["value"] for e in tables[-1]["entries"]}
    assert counts and all(v > 0 for v in counts.values())
    assert [e["value"] for e in tables[-1]["entries"]] == sorted(counts.values(), reverse=True)


@pytest.mark.parametrize("arch, dispatcher, objname", [
    ("x86_64", "x64_sys_call", "syscall_counter.bpf.o"),
    ("riscv64", "do_syscall", "syscall_counter.riscv64.bpf.o"),
    ("loongarch64", "do_syscall", "syscall_counter.loongarch64.bpf.o"),
])
def test_the_write_up_application_counts_by_the_arch_syscall_numbers(capsys, arch, dispatcher, objname):
    """The number comes from the saved user registers (orig_rax, a7, r11): the shell workload's
    reads, openats and closes are counted under that arch's numbers."""
    from kernel_sim.syscall_table import syscall_nr

    assert main(["run", str(EXAMPLES / objname), "--arch", arch, "--kprobe", dispatcher, "--duration", "1.2",
                 "--json"]) == 0
    objs = json_lines(capsys.readouterr().out)
    final = [o for o in objs if o["type"] == "map" and o["name"] == "SYSCALL_COUNTS" and o["final"]][-1]
    counts = {int(e["key"]): e["value"] for e in final["entries"]}
    for name in ("read", "openat", "close"):
        assert counts.get(syscall_nr(arch, name), 0) > 0, (name, counts)
    known = {syscall_nr(arch, n) for n in ("read", "write", "openat", "close", "nanosleep", "clone", "execve",
                                           "exit", "exit_group", "getpid", "bpf", "perf_event_open", "ioctl",
                                           "uname", "mmap", "connect", "unlinkat")}
    assert set(counts) <= known, set(counts) - known


@pytest.mark.parametrize("arch", ["riscv64", "loongarch64"])
def test_other_arches_fire_the_kprobe(capsys, arch):
    """The example built for the arch reads do_sys_openat2's arguments from that arch's pt_regs."""
    assert main(["run", str(EXAMPLES / f"opensnoop.{arch}.bpf.o"), "--kprobe", "do_sys_openat2", "--arch", arch,
                 "--cpus", "3", "--duration", "1.5", "--json"]) == 0
    events = [o for o in json_lines(capsys.readouterr().out) if o["type"] == "event"]
    assert events and {o["event"]["comm"] for o in events} <= SHELL_COMMS
    assert {o["cpu"] for o in events} <= {0, 1, 2}
    assert {o["event"]["dfd"] for o in events} == {-100}  # AT_FDCWD, from the first argument register
    assert all(o["event"]["filename"].startswith("/") for o in events)


@pytest.mark.parametrize("argv, message", [
    (["--kprobe", "no_such_function"], "no such kernel symbol in the sim kernel"),
    (["--workload", "nope"], "unknown workload 'nope'"),
    (["--program", "missing"], "no program 'missing'"),
    (["--pages", "3"], "invalid page count 3: must be a power of two"),
    (["--event-type", "nosuch"], "no struct nosuch in"),
    (["--duration", "-1"], "--duration must be a positive number of seconds (got -1)"),
])
def test_sim_errors_are_one_line(capsys, argv, message):
    code = main(["run", str(EXAMPLES / "opensnoop.bpf.o"), "--duration", "0.2", *argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_ctrl_c_on_the_simulated_kernel_detaches_and_prints_the_maps():
    exe = shutil.which("bpfload")
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; from loader.cli import main; sys.exit(main())"]
    proc = subprocess.Popen([*cmd, "run", "examples/syscount.bpf.o", "--no-ui"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    header = proc.stderr.readline()  # printed once attached
    assert header.startswith("Attached syscount to tracepoint raw_syscalls:sys_enter on sim"), header
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err
    assert "counts:" in out and "count=" in out
    assert err.strip().endswith("0 events, 0 lost")


def test_kretprobe_option_and_a_program_of_the_wrong_kind(capsys):
    obj = str(EXAMPLES / "latency.bpf.o")
    assert main(["run", obj, "--program", "vfs_read_return", "--kretprobe", "vfs_read", "--duration", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert "Attached vfs_read_return to kretprobe vfs_read on sim" in err
    assert "hist: (empty)" in out  # alone, the return probe finds no start time to measure from
    assert main(["run", obj, "--program", "vfs_read_entry", "--kretprobe", "vfs_read"]) == 1
    assert "is a kprobe program; it cannot attach as kretprobe" in capsys.readouterr().err


def test_bpftool_view_of_the_run(capsys):
    assert main(["run", str(EXAMPLES / "latency.bpf.o"), "--duration", "0.5", "--no-ui", "--bpftool"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\d+: kprobe  name vfs_read_entry  tag [0-9a-f]{16}  gpl$", out, re.M)
    assert re.search(r"^\d+: array  name hist  flags 0x0\n\tkey 4B  value 8B  max_entries 64$", out, re.M)
    assert main(["run", str(EXAMPLES / "opensnoop.bpf.o"), "--duration", "0.5", "--json", "--bpftool"]) == 0
    views = [o for o in json_lines(capsys.readouterr().out) if o["type"] == "bpftool"]
    assert {(v["object"], v["info"]["name"]) for v in views} == {("prog", "opensnoop"), ("map", "events")}


def test_globals_set_before_load_and_printed_per_variable(capsys):
    """globals.bpf.o samples every Nth syscall: N comes from --global, the counts from .bss."""
    # One CPU: the program's `calls_seen++` is not atomic, two CPUs could interleave it.
    assert main(["run", str(EXAMPLES / "globals.bpf.o"), "--duration", "1", "--json", "--cpus", "1",
                 "--global", "sample_every=4"]) == 0
    maps = {o["name"]: {e["key"]: e["value"] for e in o["entries"]}
            for o in json_lines(capsys.readouterr().out) if o["type"] == "map"}
    assert maps[".rodata"] == {"target_tgid": 0, "sample_every": 4}
    assert maps[".bss"]["calls_seen"] > 0
    assert maps[".bss"]["calls_sampled"] == maps[".bss"]["calls_seen"] // 4
    assert main(["run", str(EXAMPLES / "globals.bpf.o"), "--global", "sample_every"]) == 1
    assert capsys.readouterr().err.strip() == "bpfload: bad --global 'sample_every': expected NAME=VALUE"


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_sim_verifier_refusal_is_one_line_and_the_whole_log_on_request(capsys, tmp_path):
    from tests.test_cli_run import BAD_PROGRAM

    (tmp_path / "bad.bpf.c").write_text(BAD_PROGRAM)
    obj = tmp_path / "bad.bpf.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                    str(tmp_path / "bad.bpf.c"), "-o", str(obj)], check=True)
    assert main(["run", str(obj)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "verifier rejected it" in err[0]
    assert "R0 invalid mem access 'map_value_or_null'" in err[0]
    assert main(["run", str(obj), "--verifier-log"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) > 3 and err[-2].startswith("processed ") and "verifier rejected it" in err[-1]
