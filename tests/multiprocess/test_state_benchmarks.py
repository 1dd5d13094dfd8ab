"""The SharedArray and Latest benchmarks run end to end on mapshare's own rows and clean up.

Speed is not asserted (that is the benchmarks' job); these tests only check that every
cell runs in real spawned processes (and a real process pool), produces its figures and
its target table, and leaves nothing in /dev/shm or the temp directory. The rows of
optional packages (PyPI SharedArray, iceoryx2) are left out, so the tests need numpy only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mapshare.testing import shm_entries

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, args: list[str], tmp_path: Path) -> tuple[dict[str, Any], str]:
    out, md = tmp_path / "out.json", tmp_path / "out.md"
    r = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args, "--json", str(out),
         "--markdown", str(md)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(out.read_text()), md.read_text()


@pytest.mark.posix_only("the benchmarks pin processes with os.sched_setaffinity")
def test_shared_array_benchmark_smoke(tmp_path: Path) -> None:
    before = shm_entries()
    doc, report = _run(
        "shared_array.py",
        ["--only", "mapshare,npload,shm", "--open-n", "30", "--pool-size", str(8 << 20),
         "--work-size", str(4 << 20)],
        tmp_path,
    )
    cells = doc["cells"]
    assert not [c for c in cells if c["error"]], cells
    assert doc["leaks"] == []
    kinds = {(c["bench"], c["row"]) for c in cells}
    assert kinds - {("work", "private4k")} == {  # 4 KiB pages: where numpy can switch
        ("open", "mapshare"), ("open", "npload"), ("open", "shm"),
        ("pool", "mapshare"), ("pool", "pickle"),
        ("work", "shared"), ("work", "private"),
    }
    s = doc["summary"]
    assert s["open"]["mapshare"]["p50_us"] > 0
    # the handle crosses to the workers as its name, the alternative as the data itself
    assert s["pool"]["mapshare"]["pickled_bytes"] < 1000
    assert s["pool"]["pickle"]["pickled_bytes"] >= (8 << 20) // 4
    verdicts = {t["target"]: t for t in doc["targets"]}
    assert verdicts["SharedArray open <= 1.0x SharedArray.attach"]["ratio"] is None  # no PyPI row
    assert verdicts["work on .array >= 0.95x a private array (add)"]["ratio"] > 0
    assert "## Targets (issue 12)" in report
    assert not {e for e in shm_entries() - before if "bench-" in e}


@pytest.mark.posix_only("the benchmarks pin processes with os.sched_setaffinity")
def test_latest_benchmark_smoke(tmp_path: Path) -> None:
    before = shm_entries()
    doc, report = _run(
        "latest.py",
        ["--only", "mapshare", "--batch", "300", "--seconds", "0.05", "--readers", "1,2"],
        tmp_path,
    )
    cells = doc["cells"]
    assert not [c for c in cells if c["error"]], cells
    assert doc["leaks"] == []
    kinds = {(c["bench"], c["readers"]) for c in cells}
    assert kinds == {("getset", 0), ("readers", 1), ("readers", 2), ("copy", 0)}
    s = doc["summary"]
    assert set(s["getset"]["mapshare"]) == {"get/8", "get/4096", "set/8", "set/4096"}
    for c in cells:
        if c["bench"] == "readers":
            assert len(c["reader_rates"]) == c["readers"]
            # the writer was setting while they read, and no reader saw a version go back
            assert c["writer"]["sets"] > 0, c
            assert all(v is not None and v >= 0 for v in c["versions_seen"]), c
    assert s["copy"]["get_array_gb_s"] > 0 and s["copy"]["memcpy_gb_s"] > 0
    verdicts = {t["target"]: t for t in doc["targets"]}
    assert verdicts["Latest 8 B get <= 0.2x iceoryx2 blackboard's"]["ratio"] is None
    assert verdicts["1 MiB get_array copy >= 0.8x memcpy bandwidth"]["met"] in (True, False)
    assert "## Targets (issue 12)" in report
    assert not {e for e in shm_entries() - before if "bench-" in e}
