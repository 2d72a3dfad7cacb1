"""The example notebooks run top to bottom (nbmake): quickstart, kprobe mechanics, ring buffers.

Each notebook asserts what it shows (events decoded, the break/second-trap sequence per arch,
lost records reported, ring buffer records), so running it is the test. pytest-trio's hook
expects Python test items, so the nested run leaves that plugin out.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "examples" / "notebooks").glob("*.ipynb"))


def test_there_are_the_three_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "kprobe_mechanics", "ring_buffers"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_nbmake(notebook):
    res = subprocess.run([sys.executable, "-m", "pytest", "--nbmake", "-q", "-p", "no:cacheprovider", "-p", "no:trio",
                          "--nbmake-timeout=300", str(notebook)], capture_output=True, text=True, cwd=REPO,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "1 passed" in res.stdout
