"""CPython's own multiprocessing tests run against mapshare.multiprocessing through the
harness (tests/cpython), on a few small classes: the harness itself works from
``python -m pytest``. CI runs the whole selection with every CPython
(tools/cpython-tests.sh)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _has_cpython_tests() -> bool:
    # find_spec imports the parent package: an interpreter without any `test` package
    # (the Windows CPython the Wine stage runs) raises instead of returning None
    try:
        return importlib.util.find_spec("test._test_multiprocessing") is not None
    except ModuleNotFoundError:
        return False


pytestmark = [
    pytest.mark.skipif(not (ROOT / "tests" / "cpython").is_dir(),
                       reason="run from a source checkout"),
    pytest.mark.skipif(not _has_cpython_tests(),
                       reason="this CPython ships no test._test_multiprocessing"),
]

CLASSES = ["WithProcessesTestLock", "WithProcessesTestSemaphore", "WithProcessesTestEvent",
           "WithProcessesTestValue", "WithProcessesTestArray", "TestSimpleQueue"]


@pytest.mark.needs_fork
def test_cpython_classes_pass_against_mapshare(tmp_path: Path) -> None:
    out = tmp_path / "counts.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cpython", "--start-method", "fork", "--no-executor",
         "--timeout", "120", "--json", str(out), *CLASSES],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = json.loads(out.read_text())
    assert counts["impl"] == "mapshare"
    assert set(counts["classes"]) == set(CLASSES)
    for name, row in counts["classes"].items():
        assert row["passed"] > 0 and row["failed"] == row["errors"] == 0, (name, row)
    assert counts["left_in_dev_shm"] == []
