"""benchmarks/bridge.py runs end to end between two namespaces and leaves nothing behind.

Speed is not asserted (that is the benchmark's job); this checks that every cell runs,
that the bridge accounts for every message it did not deliver (a Lagged for each: no
silent loss), and that the namespaces are gone afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import _hosts
import pytest

pytestmark = [pytest.mark.netns, pytest.mark.root, pytest.mark.posix_only("network namespaces")]

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_bridge_benchmark_smoke(tmp_path: Path) -> None:
    reason = _hosts.unavailable()
    if reason:
        pytest.skip(reason)
    for mod in ("zenoh", "mapshare.bridge"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not available")
    out, md = tmp_path / "bridge.json", tmp_path / "bridge.md"
    r = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bridge.py"), "--quick", "--sizes", "64,4096",
         "--json", str(out), "--markdown", str(md)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    cells = doc["cells"]
    assert not [c for c in cells if c["error"]], cells
    assert doc["leftover_namespaces"] == []
    kinds = {(c["bench"], c["row"], c["size"]) for c in cells}
    assert kinds == {(b, row, z) for z in (64, 4096)
                     for b, rows in (("rtt", ("zenoh", "bridge")), ("tput", ("zenoh", "bridge")),
                                     ("local", ("alone", "bridged")))
                     for row in rows}
    for c in cells:
        if c["bench"] == "rtt":
            assert c["p50_us"] > 0, c
        elif c["row"] != "zenoh":
            # mapshare's rows: every message published is received or reported lost
            # (missed may also count a control message the network dropped: >=)
            assert c["received"] <= c["count"] <= c["received"] + c["missed"], c
    assert "bridge <= 1.2x zenoh" in md.read_text()
