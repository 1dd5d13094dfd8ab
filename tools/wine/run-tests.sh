#!/usr/bin/env bash
# Build mapshare for Windows with mingw-w64 and run the test suite under Wine.
#
#   bash tools/wine/run-tests.sh                 # pytest -q tests
#   bash tools/wine/run-tests.sh tests/unit -x   # any pytest arguments
#
# Environment: MAPSHARE_WINE_CACHE (default ~/.cache/mapshare-wine),
# MAPSHARE_WINE_TIMEOUT (seconds for the whole pytest run, default 2400: the whole suite
# takes 15 min on a quiet 2-core machine, and twice that was seen on a loaded CI runner),
# MAPSHARE_WINE_BUILD_ARGS (extra arguments for build.py, e.g. --no-werror).
# Exit code: pytest's (124 on timeout).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
LINUX_PY="${PYTHON:-python3}"

t0=$SECONDS
# setup.sh is idempotent and checks in well under a second when everything is there
bash "$HERE/setup.sh" </dev/null
t_setup=$((SECONDS - t0))

# shellcheck disable=SC2086
"$LINUX_PY" "$HERE/build.py" ${MAPSHARE_WINE_BUILD_ARGS:-}
t_build=$((SECONDS - t0 - t_setup))

mapshare_wine_server_start
trap mapshare_wine_server_stop EXIT

cd "$ROOT"
export PYTHONPATH="$(mapshare_winpath "$ROOT/build/wine/site")"
export PYTHONFAULTHANDLER=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUTF8=1
((${#@})) || set -- tests
rc=0
# Windows Python must never write to a regular file (it dies at start-up): pipe it.
timeout --kill-after=10 "${MAPSHARE_WINE_TIMEOUT:-2400}" \
    wine "$PYW/python.exe" -m pytest -q -p no:cacheprovider "$@" </dev/null 2>&1 | cat || rc=$?
echo "run-tests.sh: setup ${t_setup}s, build ${t_build}s, total $((SECONDS - t0))s, exit $rc" >&2
exit "$rc"
