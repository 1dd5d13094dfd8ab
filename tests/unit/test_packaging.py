"""What an installed mapshare says about itself (issue 10, part 7): one version everywhere,
the license in the metadata, ``mapshare --version``. The tests read the installed
distribution, so they hold for an editable install, a wheel and the sdist alike."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mapshare

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_one_version_source() -> None:
    from mapshare import _version

    assert mapshare.__version__ == _version.__version__
    assert metadata.version("mapshare") == mapshare.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc|\.dev)\d+)?", mapshare.__version__)
    # pyproject.toml must not write the version a second time
    text = PYPROJECT.read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"(?m)^version\s*=", project), "version written in pyproject.toml"
    assert re.search(r'(?m)^dynamic\s*=\s*\[[^]]*"version"', project)
    assert 'version = { attr = "mapshare._version.__version__" }' in text


def test_cli_version() -> None:
    r = subprocess.run([sys.executable, "-m", "mapshare", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"mapshare {mapshare.__version__}"


def test_license_in_the_distribution() -> None:
    dist = metadata.distribution("mapshare")
    assert dist.metadata["License"] == "MIT"
    licenses = [f for f in dist.files or () if f.name == "LICENSE"]
    assert licenses, "no LICENSE file in the installed distribution's metadata"
    text = licenses[0].read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the mapshare developers" in text
