#!/usr/bin/env python3
"""Package the mingw cross-build of mapshare as a Windows wheel (CPython 3.11, x86-64).

Run with the *Linux* Python, after tools/wine/setup.sh:

    python3 tools/wine/wheel.py            # -> dist/mapshare-<ver>-cp311-cp311-win_amd64.whl
    python3 tools/wine/wheel.py --no-build --outdir /tmp/w   # reuse build/wine/site

It runs tools/wine/build.py (unless --no-build), takes the package it staged
(build/wine/site/mapshare/, the .pyd inside) and writes a wheel of it: the metadata is the
one setuptools makes from pyproject.toml for the Linux wheels (METADATA, entry points,
LICENSE; setuptools runs in a throw-away venv, as under pip's build isolation), then WHEEL with the win_amd64 tag and a RECORD with every file's sha256 and size
(PEP 427/376), so pip installs, lists and uninstalls it like any other wheel.
tools/wine/run-tests.sh --wheel installs it into the Windows CPython under Wine.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TAG = "cp311-cp311-win_amd64"  # what build.py compiles for (its EXT_SUFFIX)
SKIP_DIRS = {"__pycache__"}
SKIP_EXT = (".pyc", ".pyo", ".so", ".o")


def dist_info(tmp: str) -> str:
    """The .dist-info directory setuptools prepares from pyproject.toml (no compiling).

    Like pip's build isolation: setuptools runs in a throw-away venv with the build-system
    requirements, not in whatever Python runs this script."""
    venv = os.path.join(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "setuptools>=61", "wheel"], text=True, capture_output=True)
    if r.returncode:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit("wheel.py: could not install setuptools and wheel for the metadata")
    code = (
        "import sys; from setuptools import build_meta as b; "
        "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))"
    )
    meta = os.path.join(tmp, "meta")
    os.makedirs(meta)
    r = subprocess.run([py, "-c", code, meta], cwd=ROOT, text=True, capture_output=True)
    if r.returncode:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit("wheel.py: setuptools could not prepare the metadata")
    name = r.stdout.strip().splitlines()[-1]
    return os.path.join(meta, name)


def record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def write_wheel(package: str, meta: str, outdir: str) -> str:
    """Zip `package` (a mapshare/ folder) and `meta` (a .dist-info folder) into a wheel."""
    info = os.path.basename(meta)  # mapshare-<ver>.dist-info
    dist_ver = info[: -len(".dist-info")]
    if not any(f.endswith(".pyd") for f in os.listdir(package)):
        raise SystemExit(f"wheel.py: no .pyd in {package}: run tools/wine/build.py")
    files: list[tuple[str, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(package):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for fn in sorted(filenames):
            if fn.endswith(SKIP_EXT):
                continue
            path = os.path.join(dirpath, fn)
            arc = "mapshare/" + os.path.relpath(path, package).replace(os.sep, "/")
            with open(path, "rb") as f:
                files.append((arc, f.read()))
    for dirpath, dirnames, filenames in os.walk(meta):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn in ("WHEEL", "RECORD"):
                continue
            path = os.path.join(dirpath, fn)
            arc = info + "/" + os.path.relpath(path, meta).replace(os.sep, "/")
            with open(path, "rb") as f:
                files.append((arc, f.read()))
    wheel_meta = (
        "Wheel-Version: 1.0\n"
        "Generator: mapshare tools/wine/wheel.py\n"
        "Root-Is-Purelib: false\n"
        f"Tag: {TAG}\n"
    ).encode()
    files.append((f"{info}/WHEEL", wheel_meta))
    record = [record_line(arc, data) for arc, data in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))

    os.makedirs(outdir, exist_ok=True)
    out = os.path.join(outdir, f"{dist_ver}-{TAG}.whl")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            zi = zipfile.ZipInfo(arc, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "wine"))
    ap.add_argument("--outdir", default=os.path.join(ROOT, "dist"))
    ap.add_argument("--no-build", action="store_true",
                    help="package what build.py staged last instead of building")
    args = ap.parse_args(argv)
    if not args.no_build:
        r = subprocess.run([sys.executable, os.path.join(HERE, "build.py"),
                            "--build-dir", args.build_dir])
        if r.returncode:
            return r.returncode
    package = os.path.join(args.build_dir, "site", "mapshare")
    with tempfile.TemporaryDirectory() as tmp:
        out = write_wheel(package, dist_info(tmp), args.outdir)
    with zipfile.ZipFile(out) as z:  # read back: a zip error here, not at pip install
        bad = z.testzip()
        if bad is not None:
            raise SystemExit(f"wheel.py: {out}: corrupt member {bad}")
        n = len(z.namelist())
    print(f"wheel.py: {os.path.relpath(out)} ({n} files, {os.path.getsize(out)} bytes)")
    shutil.rmtree(os.path.join(ROOT, "src", "mapshare.egg-info"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
