"""``bpfload vm exec``: the bpf_conformance plugin protocol, in process and as a real process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_sim.bpf.engine import engine_kinds
from loader.cli import main

CASES = {c["name"]: c for c in json.loads((Path(__file__).parent / "data" / "bpf_conformance" /
                                           "assembled.json").read_text())}


def run_cli(monkeypatch, capsys, stdin: str, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["vm", "exec", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("kind", engine_kinds())
@pytest.mark.parametrize("name", ["ldxb-all.data", "subnet.data", "lock_cmpxchg.data", "call_local.data"])
def test_conformance_cases_through_the_cli(monkeypatch, capsys, kind, name):
    case = CASES[name]
    mem = " ".join(case["mem"][i:i + 2] for i in range(0, len(case["mem"]), 2))
    code, out, err = run_cli(monkeypatch, capsys, case["insns"], *([mem] if mem else []), "--engine", kind)
    assert (code, err) == (0, "")
    assert int(out, 16) == int(case["result"], 16)


@pytest.mark.parametrize("stdin, argv, message", [
    ("", [], "no program on stdin"),
    ("b7000000", [], "not a multiple of 8"),
    ("zz", [], "program on stdin is not hex"),
    ("b7000000000000009500000000000000", ["0g"], "memory argument is not hex"),
    ("7900000000000000" + "9500000000000000", [], "invalid read of 8 bytes at 0x0 (insn 0)"),
])
def test_errors_are_one_line_and_nonzero(monkeypatch, capsys, stdin, argv, message):
    code, out, err = run_cli(monkeypatch, capsys, stdin, *argv)
    assert code != 0 and out == ""
    assert message in err and err.count("\n") == 1


def test_as_a_plugin_process():
    """What the conformance runner does: a process, memory on the command line, program on stdin."""
    # r0 = mem[0]; r2 = mem[1]; r0 += r2; exit
    prog = "7110000000000000 7112010000000000 0f20000000000000 9500000000000000"
    entry = "import sys; from loader.cli import main; sys.exit(main())"  # what the bpfload script runs
    res = subprocess.run([sys.executable, "-c", entry, "vm", "exec", "05 07"], input=prog,
                         capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "c\n"
