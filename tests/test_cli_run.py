"""`bpfload run`: one-line errors, and the real kernel streaming real events (perf and ring)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from loader.cli import main
from tests.conftest import linux_bpf_denied

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bpfload: ") and "Traceback" not in err
    return lines[0]


def test_missing_file_is_one_line(capsys):
    code, out, err = run_cli(capsys, "/nonexistent/x.bpf.o", "--kprobe", "do_sys_openat2")
    assert code == 1 and out == ""
    assert "/nonexistent/x.bpf.o: no such file" in one_line_error(err)


def test_not_an_object_is_one_line(capsys, tmp_path):
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf at all")
    code, _, err = run_cli(capsys, str(junk), "--tracepoint", "syscalls/sys_enter_openat")
    assert code == 1 and "not an ELF" in one_line_error(err)


@pytest.mark.parametrize("argv, message", [
    (["--tracepoint", "nocategory"], "expected CATEGORY/NAME"),
    (["--kprobe", "+8"], "expected SYM or SYM+OFFSET"),
    (["--kprobe", "do_sys_openat2+zz"], "bad kprobe offset"),
    (["--uprobe", "libc"], "expected PATH:SYMBOL"),
    (["--cpus", "0"], "--cpus must be at least 1"),
    (["--kernel", "linux", "--workload", "shell"], "simulated kernel only"),
])
def test_bad_options_are_one_line(capsys, argv, message):
    code, _, err = run_cli(capsys, str(EXAMPLES / "opensnoop_tp.bpf.o"), *argv)
    assert code == 1 and message in one_line_error(err)


def test_two_attach_options_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "x.o", "--kprobe", "a", "--tracepoint", "b/c"])
    assert e.value.code == 2


# -- the real kernel --------------------------------------------------------------------------------

needs_bpf = pytest.mark.skipif(linux_bpf_denied() is not None, reason=str(linux_bpf_denied()))


def start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import sys; from loader.cli import main; sys.exit(main())",
                             "run", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def wait_attached(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The header line on stderr says the program is attached (or the error that stopped it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            if line.startswith("Attached") or line.startswith("bpfload:") or not line:
                return line
    raise AssertionError("bpfload run did not attach in time")


@needs_bpf
def test_linux_tracepoint_streams_real_opens_as_json(tmp_path):
    proc = start(str(EXAMPLES / "opensnoop_tp.bpf.o"), "--kernel", "linux", "--tracepoint",
                 "syscalls/sys_enter_openat", "--json", "--duration", "3")
    assert wait_attached(proc).startswith("Attached"), proc.stderr.read()
    marker = tmp_path / f"bpfload-{uuid.uuid4().hex}"
    marker.write_text("x")
    for _ in range(3):
        with open(marker):
            pass
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    objs = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(o, dict) and "type" in o for o in objs)
    mine = [o for o in objs if o["type"] == "event" and o["event"]["filename"] == str(marker)]
    assert len(mine) >= 3
    comm = Path("/proc/self/comm").read_text().strip()
    assert {(o["event"]["pid"], o["event"]["comm"]) for o in mine} == {(os.getpid(), comm)}
    assert all(0 <= o["cpu"] < os.cpu_count() for o in mine)
    assert objs[-1]["type"] == "summary" and objs[-1]["events"] >= 3


@needs_bpf
def test_linux_ring_buffer_sees_an_exec(tmp_path):
    proc = start(str(EXAMPLES / "execsnoop.bpf.o"), "--kernel", "linux", "--json", "--duration", "3")
    assert wait_attached(proc).startswith("Attached"), proc.stderr.read()
    subprocess.run(["/bin/true"], check=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    execs = [o["event"] for o in events if o["type"] == "event"]
    assert any(e["comm"] == "true" and e["filename"] == "/bin/true" for e in execs), execs


@needs_bpf
def test_linux_ctrl_c_detaches_and_prints_the_maps():
    proc = start(str(EXAMPLES / "syscount.bpf.o"), "--kernel", "linux", "--no-ui")
    assert wait_attached(proc).startswith("Attached"), proc.stderr.read()
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "counts:" in out and "KEY" in out
    assert "events, 0 lost" in err and "Traceback" not in err


@needs_bpf
def test_linux_unknown_tracepoint_and_program_are_one_line(capsys):
    obj = str(EXAMPLES / "opensnoop_tp.bpf.o")
    code, _, err = run_cli(capsys, obj, "--kernel", "linux", "--tracepoint", "syscalls/sys_enter_nothing")
    assert code == 1 and "no such tracepoint" in one_line_error(err)
    code, _, err = run_cli(capsys, obj, "--kernel", "linux", "--program", "nope")
    assert code == 1 and "no program 'nope'" in one_line_error(err)


BAD_PROGRAM = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 8); __type(key, __u32); __type(value, __u64); } m SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_openat")
int bad(void *ctx) { __u32 k = 0; __u64 *v = bpf_map_lookup_elem(&m, &k); return *v; /* no NULL check */ }
char LICENSE[] SEC("license") = "GPL";
"""


@needs_bpf
@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_linux_verifier_refusal_is_one_line_with_the_log_shortened(capsys, tmp_path):
    src = tmp_path / "bad.bpf.c"
    src.write_text(BAD_PROGRAM)
    obj = tmp_path / "bad.bpf.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", str(src),
                    "-o", str(obj)], check=True)
    code, _, err = run_cli(capsys, str(obj), "--kernel", "linux")
    line = one_line_error(err)
    assert code == 1 and "verifier rejected it" in line
    assert "invalid mem access 'map_value_or_null'" in line


UPROBE_PROGRAM = r"""
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
struct event { __u32 pid; __u32 arg; char comm[16]; };
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096 * 4); } rb SEC(".maps");
SEC("uprobe")
int on_marker(struct pt_regs *ctx) {
    struct event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
    if (!e) return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->arg = (__u32)PT_REGS_PARM1(ctx);
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, 0);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""
TARGET = r"""
#include <stdio.h>
__attribute__((noinline)) int bpfload_marker(int x) { __asm__ volatile(""); return x + 1; }
int main(void) { int s = 0; for (int i = 0; i < 3; i++) s += bpfload_marker(40 + i); printf("%d\n", s); return 0; }
"""


@needs_bpf
@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_linux_uprobe_on_a_function_of_our_binary(tmp_path):
    (tmp_path / "up.bpf.c").write_text(UPROBE_PROGRAM)
    (tmp_path / "target.c").write_text(TARGET)
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(tmp_path / "up.bpf.c"), "-o", str(tmp_path / "up.bpf.o")], check=True)
    target = tmp_path / "target"
    subprocess.run(["clang", "-O1", "-o", str(target), str(tmp_path / "target.c")], check=True)
    proc = start(str(tmp_path / "up.bpf.o"), "--kernel", "linux", "--uprobe", f"{target}:bpfload_marker",
                 "--json", "--duration", "3")
    assert wait_attached(proc).startswith("Attached on_marker to uprobe"), proc.stderr.read()
    ran = subprocess.run([str(target)], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "126"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [o["event"] for o in map(json.loads, out.splitlines()) if o["type"] == "event"]
    assert [(e["comm"], e["arg"]) for e in events] == [("target", 40), ("target", 41), ("target", 42)]
    assert len({e["pid"] for e in events}) == 1


@needs_bpf
def test_linux_run_leaves_no_descriptor_behind(capsys):
    argv = ["run", str(EXAMPLES / "opensnoop_tp.bpf.o"), "--kernel", "linux", "--duration", "0.3", "--json"]
    assert main(argv) == 0  # warm-up: imports and whatever they keep open
    before = set(os.listdir("/proc/self/fd"))
    assert main(argv) == 0
    capsys.readouterr()
    assert set(os.listdir("/proc/self/fd")) - before == set()
