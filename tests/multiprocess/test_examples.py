"""The examples run: both roles of each, as separate processes, succeed and clean up."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mapshare.testing import shm_entries

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    "folder", ["segment", "channel", "lock", "numpy", "topic", "latest", "array"]
)
def test_example_runs(folder: str) -> None:
    before = shm_entries()
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "run.py"), folder],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{folder}: exit codes [0, 0]" in r.stdout
    assert not {e for e in shm_entries() - before if f"ex-{folder[:4]}" in e}


@pytest.mark.posix_only("libmapshare is built on Linux only for now (docs/c-api.md)")
def test_c_example_runs() -> None:
    """examples/c: the C program (built by its Makefile) and the Python program exchange
    data both ways through a segment, a channel each way and the segment's lock."""
    for tool in ("make", "cc"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} on PATH: the C half of examples/c cannot be built")
    before = shm_entries()
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "run.py"), "c"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for line in [
        "c: exit codes [0, 0]",
        'c_side: read "hello from Python"',
        "python_side: read 'hello from C, who read 17 bytes'",
        "python_side: got ['done: job 0', 'done: job 1', 'done: job 2', 'done: job 3', "
        "'done: job 4']",
        "python_side: counter = 20000 (no update lost)",
    ]:
        assert line in r.stdout.splitlines(), (line, r.stdout)
    assert not {e for e in shm_entries() - before if "ex-c-" in e}


def test_lock_example_shows_contention() -> None:
    # the workers used to run one after the other, so the example never
    # showed two processes contending for the lock
    import re

    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "run.py"), "lock"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    waits = [int(n) for n in re.findall(r"found the lock held (\d+) times", r.stdout)]
    assert len(waits) == 2 and sum(waits) > 0, r.stdout
    assert "counter = 20000 (no update lost)" in r.stdout, r.stdout


def test_examples_do_not_hand_write_retry_loops() -> None:
    # open(..., wait=) replaces the retry loop around open
    for script in EXAMPLES.glob("*/*.py"):
        text = script.read_text()
        assert "except mapshare.SegmentNotFoundError" not in text, script
