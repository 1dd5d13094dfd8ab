"""Every relative link in README.md and docs/ points at a file that exists (the API
reference and the design pages are reached through links, so a moved or renamed page
must not leave them dangling)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")

# the links point into the whole checkout (src/, tools/, benchmarks/): not in a copy of the
# tests run against an installed wheel
pytestmark = pytest.mark.skipif(
    not (ROOT / "src" / "mapshare").is_dir(), reason="run from a source checkout"
)


def test_relative_links_resolve() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, f"links to missing files: {broken}"


def test_api_reference_is_linked() -> None:
    assert "docs/api.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(api.md)" in (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
