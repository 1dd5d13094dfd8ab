"""The CPython tests not run against mapshare (tests/cpython/skips.py, the one list) are the
ones docs/multiprocessing.md lists, with the same reasons: the page cannot drift from the
harness."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "multiprocessing.md"
BEGIN, END = "<!-- cpython-skips:begin -->", "<!-- cpython-skips:end -->"

pytestmark = pytest.mark.skipif(
    not (ROOT / "tests" / "cpython").is_dir(),
    reason="run from a source checkout",
)


def test_docs_list_the_skips_of_the_harness() -> None:
    table = subprocess.run(
        [sys.executable, "-m", "tests.cpython", "--skips-markdown"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"{DOC.name} has no {BEGIN} ... {END} section"
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert documented == table.strip(), (
        f"the skip table in {DOC.name} differs from tests/cpython/skips.py; paste the output"
        " of `python -m tests.cpython --skips-markdown` between its markers"
    )


def test_every_skip_names_a_standard_test_class_and_a_reason() -> None:
    spec = importlib.util.spec_from_file_location("_skips", ROOT / "tests/cpython/skips.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for key, reason in module.SKIPS.items():
        cls, _, test = key.partition(".")
        assert cls and test.startswith("test_"), key
        assert len(reason) > 20, f"{key}: say why"
