"""The Topic benchmark's harness runs end to end on mapshare's own rows and cleans up.

Speed is not asserted (that is the benchmark's job); these tests only check that every
cell kind runs in real spawned processes, produces its figures and its target table, and
leaves nothing in /dev/shm or the temp directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mapshare.testing import shm_entries

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.posix_only("the benchmark pins processes with os.sched_setaffinity")
def test_topic_benchmark_smoke(tmp_path: Path) -> None:
    before = shm_entries()
    out = tmp_path / "topic.json"
    md = tmp_path / "topic.md"
    r = subprocess.run(
        [
            sys.executable, str(BENCHMARKS / "topic.py"), "--quick", "--only", "topic,channel",
            "--rtt-n", "200", "--stall-n", "500", "--seconds", "0.02", "--sizes", "64,4096",
            "--subscribers", "1,2", "--fanout-subscribers", "1,2", "--timeout", "60",
            "--json", str(out), "--markdown", str(md),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    cells = doc["cells"]
    assert not [c for c in cells if c["error"]], cells
    assert doc["leaks"] == []
    kinds = {(c["transport"], c["bench"], c["size"], c["subscribers"]) for c in cells}
    assert kinds == {
        ("topic", "rtt", 64, 1), ("channel", "rtt", 64, 1),
        ("topic", "pubcost", 64, 1), ("topic", "pubcost", 64, 2),
        ("topic", "fanout", 64, 1), ("topic", "fanout", 4096, 1),
        ("topic", "fanout", 64, 2), ("topic", "fanout", 4096, 2),
        ("topic", "stall", 64, 0), ("topic", "stall", 64, 1),
    }
    by = {(c["bench"], c["transport"], c["size"], c["subscribers"]): c for c in cells}
    # the fan-out cells run in block mode: every subscriber got every timed message
    for n in (1, 2):
        c = by[("fanout", "topic", 64, n)]
        assert c["delivered"] == n * c["count"] and c["missed"] == 0, c
    assert by[("rtt", "topic", 64, 1)]["p50_us"] > 0
    assert by[("stall", "topic", 64, 1)]["stall"]["p999_ns"] > 0
    report = md.read_text()
    assert "round trip p50 <= 1.3x Channel" in report
    verdicts = {t["target"]: t for t in doc["targets"]}
    assert verdicts["round trip p50 <= 1.3x Channel"]["met"] in (True, False)
    assert verdicts["publisher cost, 2 subscribers <= 1.2x 1"]["ratio"] > 0
    assert not {e for e in shm_entries() - before if "bench-" in e}


@pytest.mark.posix_only("the benchmark pins processes with os.sched_setaffinity")
def test_journal_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/journal.py: every cell runs tiny (lmdb's rows only where it is installed),
    reports every target, and removes its files."""
    out = tmp_path / "journal.json"
    md = tmp_path / "journal.md"
    r = subprocess.run(
        [
            sys.executable, str(BENCHMARKS / "journal.py"), "--quick", "--seconds", "0.05",
            "--tail-n", "2000", "--index-records", "3000", "--samples", "200",
            "--dir", str(tmp_path / "work"), "--json", str(out), "--markdown", str(md),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["errors"] == [] and doc["leaks"] == []
    rows = {(c["cell"], c["row"]) for c in doc["summary"]}
    expected = {
        ("append", "journal process"), ("append", "Channel.send"),
        ("append", "sqlite3 WAL synchronous=NORMAL"), ("append", "sqlite3 WAL synchronous=OFF"),
        ("durable", "journal os"), ("durable", "os.write + os.fdatasync"),
        ("durable", "sqlite3 WAL synchronous=FULL"),
        ("group", "journal os-batch, 8 appenders"), ("group", "journal os, 8 appenders"),
        ("tail", "journal reader"), ("tail", "Channel.receive"),
        ("index", "journal j[i], 3,000 records"),
    }
    lmdb_rows = {("append", "lmdb sync=False"), ("durable", "lmdb sync=True")}
    assert rows in (expected, expected | lmdb_rows), rows
    for c in doc["summary"]:
        if c["cell"] == "index":
            assert 0 < c["value"]["p50_us"] <= c["value"]["p99_us"]
        else:
            assert c["value"] > 0, c
    targets = {t["target"]: t for t in doc["targets"]}
    assert len(targets) == 9
    assert all(t["met"] in (True, False) for t in targets.values()), targets
    assert "Targets (measured >= required: met)" in md.read_text()
    # the working directory's files are gone (the --dir itself stays)
    assert os.listdir(tmp_path / "work") == []
