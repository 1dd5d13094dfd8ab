"""The examples run: both roles of each, as separate processes, succeed and clean up."""

import subprocess
import sys
from pathlib import Path

import pytest

from mapshare.testing import shm_entries

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("folder", ["segment", "channel", "lock", "numpy"])
def test_example_runs(folder: str) -> None:
    before = shm_entries()
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "run.py"), folder],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{folder}: exit codes [0, 0]" in r.stdout
    assert not {e for e in shm_entries() - before if f"ex-{folder[:4]}" in e}
