"""What an installed mapshare says about itself: one version everywhere,
the license in the metadata, ``mapshare --version``. The tests read the installed
distribution, so they hold for an editable install, a wheel and the sdist alike."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

import mapshare

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _distribution() -> metadata.Distribution:
    try:
        return metadata.distribution("mapshare")
    except metadata.PackageNotFoundError:
        # a run from a built tree without metadata (the Windows suite under Wine); the
        # wheel stages test an installed distribution
        pytest.skip("mapshare is not installed as a distribution here")


def test_one_version_source() -> None:
    from mapshare import _version

    assert mapshare.__version__ == _version.__version__
    assert _distribution().version == mapshare.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc|\.dev)\d+)?", mapshare.__version__)
    # pyproject.toml must not write the version a second time
    text = PYPROJECT.read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"(?m)^version\s*=", project), "version written in pyproject.toml"
    assert re.search(r'(?m)^dynamic\s*=\s*\[[^]]*"version"', project)
    assert 'version = { attr = "mapshare._version.__version__" }' in text


def test_license_in_the_distribution() -> None:
    dist = _distribution()
    assert dist.metadata["License"] == "MIT"
    licenses = [f for f in dist.files or () if f.name == "LICENSE"]
    assert licenses, "no LICENSE file in the installed distribution's metadata"
    text = licenses[0].read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the mapshare developers" in text


def test_every_subpackage_is_packaged() -> None:
    """pyproject.toml lists its packages by hand: a subpackage added to src/mapshare/
    but not there is missing from the wheel (mapshare.multiprocessing once was: an
    editable install hides it, a built one does not)."""
    src = PYPROJECT.parent / "src"
    found = sorted(
        ".".join(p.parent.relative_to(src).parts)
        for p in (src / "mapshare").rglob("__init__.py")
        if "__pycache__" not in p.parts
    )
    text = PYPROJECT.read_text()
    listed = re.search(r"(?m)^packages\s*=\s*\[([^]]*)\]", text)
    assert listed, "no packages = [...] in pyproject.toml"
    assert sorted(re.findall(r'"([^"]+)"', listed.group(1))) == found
