"""benchmarks/mp.py (mapshare.multiprocessing vs multiprocessing) runs end to end on tiny
counts: every cell kind runs in real spawned processes, produces its figure and the target
table, and leaves nothing in /dev/shm. Speed is not asserted (that is the benchmark's job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.posix_only("the benchmark pins processes with os.sched_setaffinity")
def test_mp_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "mp.json"
    r = subprocess.run(
        [sys.executable, str(BENCHMARKS / "mp.py"), "--quick", "--scale", "0.02",
         "--impl", "mapshare,multiprocessing", "--only", "queue,pool,lock,event",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["errors"] == [] and doc["left_in_dev_shm"] == []
    cells = doc["summary"]
    assert set(cells) == {"queue int", "queue tuple", "queue 4KiB", "pool chunksize=1",
                          "pool chunksize=default", "lock uncontended", "lock contended",
                          "event"}
    for name, row in cells.items():
        assert set(row) == {"mapshare", "multiprocessing"}, name
    assert any(t["target"].startswith("Queue int") for t in doc["targets"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pool_cpu.py reads /proc")
def test_pool_cpu_benchmark_smoke() -> None:
    """benchmarks/pool_cpu.py prints a row per context (tiny counts; no figure asserted)."""
    r = subprocess.run(
        [sys.executable, str(BENCHMARKS / "pool_cpu.py"), "--tasks", "1000", "--maps", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["mapshare", "multiprocessing"]
