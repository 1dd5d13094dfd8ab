#!/usr/bin/env bash
# Install the Linux wheel that tools/build-wheels.sh built into a fresh venv the way a user
# without a compiler does, and run the test suite against it.
#
#   tools/build-wheels-test.sh [DIST] [pytest args...]     (default: dist/, the whole suite)
#
# The install step runs with no compiler reachable (PATH is the venv's bin/ alone, CC and
# CXX point at /bin/false) and may take only a wheel (--only-binary, --no-index): if pip
# had to build mapshare from source, it would fail here. The tests run from a copy of
# tests/, examples/, docs/, README.md and pyproject.toml -- no src/ -- and first check that
# `import mapshare` is the venv's installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

DIST=$(realpath "${1:-dist}")
shift || true
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/mapshare-wheeltest-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

"$PY" -m venv "$WORK/venv"
V=$WORK/venv/bin
# the test tools first, with the ordinary PATH (numpy etc. are wheels too)
"$V/python" -m pip install -q pytest hypothesis numpy
echo "== pip install --no-index --find-links $DIST --only-binary=:all: mapshare (no compiler)"
env PATH="$V" CC=/bin/false CXX=/bin/false \
    "$V/python" -m pip install --no-index --find-links "$DIST" --only-binary=:all: mapshare

mkdir "$WORK/t"
git ls-files -z tests examples docs README.md pyproject.toml | xargs -0 cp --parents -t "$WORK/t"
cd "$WORK/t"
"$V/python" - "$WORK/venv" <<'PY'
import os, sys, sysconfig
import mapshare, mapshare._core
venv = os.path.realpath(sys.argv[1])
for mod in (mapshare, mapshare._core):
    path = os.path.realpath(mod.__file__)
    assert path.startswith(venv + os.sep), f"{mod.__name__} imported from {path}, not {venv}"
print("installed:", mapshare.__version__, os.path.dirname(mapshare._core.__file__),
      os.path.basename(mapshare._core.__file__))
PY
"$V/python" -m pytest -q -p no:cacheprovider "$@"
