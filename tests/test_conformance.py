"""All programs of the bpf_conformance suite on every engine of this tree.

The data (tests/data/bpf_conformance, MIT, see its LICENSE) was assembled by that project; the
runner's environment is engine.run_raw: r1 = input memory or 0, r2 = its length, helper 5
returns its argument (0 ends the program).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel_sim.bpf.engine import engine_kinds, run_raw

DATA = Path(__file__).parent / "data" / "bpf_conformance" / "assembled.json"
CASES = json.loads(DATA.read_text())


def test_suite_is_complete() -> None:
    assert len(CASES) == 313


@pytest.mark.parametrize("kind", engine_kinds())
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance(case: dict, kind: str) -> None:
    mem = bytes.fromhex(case["mem"])
    r0, _ = run_raw(bytes.fromhex(case["insns"]), mem, kind)
    assert r0 == int(case["result"], 16)
