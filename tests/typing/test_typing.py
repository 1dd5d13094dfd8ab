"""The public API's types, checked by mypy: factories, ``with`` blocks, receive calls,
loan windows and ``collect()`` give users concrete types, never ``Any``
(tests/typing/check_api.py holds the assertions)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy.api", reason="mypy is in the 'lint' extra")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _mypy(*files: Path) -> tuple[int, str]:
    """mypy with the project's configuration (strict) over ``files``, in a child process:
    in-process (mypy.api) it leaves a heap of millions of objects behind, and every later
    gc.collect() of the session took over a second (the mp tests' fixture collects after
    each test: 5 minutes more for tests/unit)."""
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--no-incremental", "--cache-dir", os.devnull, *map(str, files)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    return r.returncode, r.stdout + r.stderr


def test_public_api_types() -> None:
    status, report = _mypy(HERE / "check_api.py")
    assert status == 0, report
    assert "Success: no issues found" in report


def test_a_wrong_assertion_fails(tmp_path: Path) -> None:
    # the harness itself: an assert_type that does not hold is reported
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent("""\
        from typing_extensions import assert_type

        import mapshare

        assert_type(mapshare.Channel.open("c").receive_object(), int)
    """))
    status, report = _mypy(bad)
    assert status == 1, report
    assert 'Expression is of type "object", not "int"' in report
