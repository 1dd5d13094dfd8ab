"""The README tour runs as printed (its reader once timed out when the writer
notified before the reader opened)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mapshare

README = Path(__file__).resolve().parents[2] / "README.md"


def _tour() -> tuple[str, str]:
    text = README.read_text()
    block = re.search(r"## A tour.*?```python\n(.*?)```", text, re.S)
    assert block, "the tour's code block"
    code = block.group(1)
    first, second = code.split("# process 2")
    return first.replace("# process 1", ""), second


def test_readme_tour_when_the_writer_notifies_first(name: str) -> None:
    first, second = _tour()
    first = first.replace('"telemetry"', repr(name))
    second = second.replace('"telemetry"', repr(name))
    scope: dict[str, object] = {}
    exec(first, scope)  # process 1: create, write, notify -- before process 2 exists
    seg = scope["seg"]
    assert isinstance(seg, mapshare.Segment)
    try:
        r = subprocess.run(
            [sys.executable, "-c", "import mapshare\n" + second],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "b'hello'"
    finally:
        seg.close()


def test_readme_tour_when_the_reader_opens_first(name: str) -> None:
    first, second = _tour()
    first = "import time\ntime.sleep(0.5)\n" + first.replace('"telemetry"', repr(name))
    second = second.replace('"telemetry"', repr(name))
    reader = subprocess.Popen(
        [sys.executable, "-c", "import mapshare\n" + second],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    scope: dict[str, object] = {}
    try:
        exec(first, scope)
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
        assert out.strip() == "b'hello'"
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        seg = scope.get("seg")
        if isinstance(seg, mapshare.Segment):
            seg.close()
