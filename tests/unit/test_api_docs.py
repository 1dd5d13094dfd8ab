"""docs/api.md is exactly what tools/gen_api_docs.py writes from the docstrings now: a
changed signature or docstring, or a new exported name, makes this fail until the page is
regenerated (never edited by hand)."""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "gen_api_docs.py"
PAGE = ROOT / "docs" / "api.md"

pytestmark = [
    pytest.mark.skipif(not TOOL.exists(), reason="run from a source checkout"),
    # One interpreter writes the page (the one of the main suite): another version may
    # render a signature differently, which says nothing about the docs being current.
    pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="docs/api.md is made by 3.11"),
]


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_docs", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_page_is_current() -> None:
    tool = load_tool()
    expected = tool.render()
    current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if current != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/api.md (in the tree)",
                    "docs/api.md (from the docstrings)",
                    n=1,
                )
            )[:60]
        )
        pytest.fail(
            f"docs/api.md is out of date: run `{tool.COMMAND}` and commit the result\n{diff}"
        )


def test_generator_is_deterministic() -> None:
    tool = load_tool()
    first = tool.render()
    assert load_tool().render() == first
    assert " at 0x" not in first, "an address in the page: the output would change every run"
