#!/usr/bin/env bash
# Build the Windows wheel (tools/wine/wheel.py), install it with the Windows CPython's own
# pip under Wine, and run tests against the installed copy.
#
#   bash tools/wine/wheel-test.sh                        # smoke, segment, sync, array, latest
#   bash tools/wine/wheel-test.sh tests/unit -x          # any pytest arguments
#
# pip installs into build/wine/wheel-site (--target: the cached Windows CPython itself stays
# as tools/wine/setup.sh made it), and the tests run with only that folder on PYTHONPATH,
# after checking that mapshare and mapshare._core come from there.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
LINUX_PY="${PYTHON:-python3}"

bash "$HERE/setup.sh" </dev/null
DIST="$ROOT/build/wine/dist"
SITE="$ROOT/build/wine/wheel-site"
rm -rf "$DIST" "$SITE"
"$LINUX_PY" "$HERE/wheel.py" --outdir "$DIST"
whl=$(ls "$DIST"/mapshare-*-cp311-cp311-win_amd64.whl)

mapshare_wine_server_start
trap mapshare_wine_server_stop EXIT
cd "$ROOT"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUTF8=1 PYTHONFAULTHANDLER=1
# Windows Python must never write to a regular file (it dies at start-up): pipe it.
wine "$PYW/python.exe" -m pip install -q --disable-pip-version-check --no-deps --no-index \
    --target "$(mapshare_winpath "$SITE")" "$(mapshare_winpath "$whl")" </dev/null 2>&1 | cat
export PYTHONPATH="$(mapshare_winpath "$SITE")"
wine "$PYW/python.exe" -c '
import os, sys, mapshare, mapshare._core
site = os.path.normcase(os.environ["PYTHONPATH"])
for m in (mapshare, mapshare._core):
    assert os.path.normcase(m.__file__).startswith(site), (m.__name__, m.__file__, site)
print("wheel-test.sh: installed", mapshare.__version__, os.path.basename(mapshare._core.__file__))
' </dev/null 2>&1 | cat
# + SharedArray and Latest (the .pyd's array and latest cores; numpy from setup.sh)
((${#@})) || set -- tests/unit/test_smoke.py tests/unit/test_segment.py tests/unit/test_sync.py \
    tests/unit/test_array.py tests/unit/test_latest.py
timeout --kill-after=10 "${MAPSHARE_WINE_TIMEOUT:-900}" \
    wine "$PYW/python.exe" -m pytest -q -p no:cacheprovider "$@" </dev/null 2>&1 | cat
