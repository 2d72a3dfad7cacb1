"""The bpf_conformance programs on the JIT itself (every build option), plus the suite's known gaps.

The suite's runner environment: r1 = input memory (or 0), r2 = its length, helper 5 returns
its argument and ends the program with r0 = 0 when that argument is 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel_sim.uapi.insn import decode
from kernel_sim.vm.jit import JitEngine
from kernel_sim.vm.memory import AddressSpace
from kernel_sim.vm.program import VmProgram
from kernel_sim.vm.runctx import ProgramExit, RunContext, execute

_LOCAL = Path(__file__).parent / "data" / "bpf_conformance" / "assembled.json"
_SHARED = Path("/work/shared/conformance/bpf_conformance/assembled.json")
DATA = _LOCAL if _LOCAL.exists() else _SHARED
CASES = json.loads(DATA.read_text())


def _unwind(run, r1, r2, r3, r4, r5) -> int:
    if r1 == 0:
        raise ProgramExit(0)
    return r1


def run_jit(insns, mem: bytes = b"", **options) -> tuple[int, bytes, JitEngine]:
    vm = AddressSpace()
    prog = VmProgram.build(insns, {5: _unwind}, vm)
    engine = JitEngine(prog, **options)
    run = RunContext(None, vm=vm, printk=lambda text: None)
    buf = bytearray(mem)
    r1 = run.map_region(buf) if mem else 0
    return execute(engine, run, r1, len(mem)), bytes(buf), engine


def test_all_programs_present() -> None:
    assert len(CASES) == 313


@pytest.mark.parametrize("options", [{}, {"loop_guard": False}, {"count": True}, {"structured": False}],
                         ids=["default", "noguard", "count", "dispatch"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance_on_jit(case: dict, options: dict) -> None:
    r0, _, _ = run_jit(decode(bytes.fromhex(case["insns"])), bytes.fromhex(case["mem"]), **options)
    assert r0 == int(case["result"], 16)
