#!/bin/sh
# Run the whole Python test suite against an extension built with AddressSanitizer +
# UndefinedBehaviorSanitizer (UBSan non-recoverable: any report aborts).
#
#   tools/sanitize.sh [pytest args...]     # default: tests  (-x -q -p no:cacheprovider)
#
# The instrumented build goes into a fresh venv ($MS_SANITIZE_VENV, default
# /tmp/mapshare-sanitize/venv, created with --system-site-packages for pytest and numpy)
# from a copy of the source tree, so the normal (editable) build in src/ is untouched.
# CPython is not instrumented, so libasan is preloaded; every Python child process the
# tests start inherits it.  Reports of every process go to $WORK/reports/; the run fails
# if pytest fails or if any report file appears (a report in a child whose exit status
# a test tolerates still fails the run).
#
# ASAN_OPTIONS: detect_leaks=0 (CPython's own allocations at exit are not ours);
# handle_segv=0, handle_sigbus=0, allow_user_segv_handler=1 so that the core's SIGBUS
# guard (ms_p_guarded_call) keeps its handler: a truncated segment must still raise
# SegmentFaultError under ASan.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MS_SANITIZE_WORK:-/tmp/mapshare-sanitize}
VENV=${MS_SANITIZE_VENV:-$WORK/venv}
PY=${PYTHON:-python3}
start=$(date +%s)
rm -rf "$WORK/src" "$WORK/reports" "$VENV"
mkdir -p "$WORK/src" "$WORK/reports"
# a private copy of what the build needs (pip would otherwise write build/ into the tree)
(cd "$ROOT" && tar cf - setup.py pyproject.toml README* LICENSE* csrc include src/mapshare 2>/dev/null) |
    (cd "$WORK/src" && tar xf -)
find "$WORK/src/src/mapshare" -name '_core*.so' -delete
"$PY" -m venv --system-site-packages "$VENV"
# pytest and numpy usually come from the base interpreter; install them if they do not
"$VENV/bin/python" -c "import pytest, numpy" 2>/dev/null ||
    "$VENV/bin/pip" install -q pytest numpy >"$WORK/pip-deps.log" 2>&1 ||
    { cat "$WORK/pip-deps.log"; exit 1; }
MAPSHARE_SANITIZE=1 "$VENV/bin/pip" install -q --no-deps --no-build-isolation \
    --no-cache-dir "$WORK/src" >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; exit 1; }
LIBASAN=$(gcc -print-file-name=libasan.so)
export LD_PRELOAD="$LIBASAN${LD_PRELOAD:+ $LD_PRELOAD}"
# The suite forks a lot, and a child forked while another thread of the parent holds
# ASan's allocator lock deadlocks in its first malloc (seen once in this stage: gdb showed
# the child in __asan::Allocator::Allocate <- PyOS_AfterFork_Child, the parent left with
# one thread).  So no helper threads: numpy's OpenBLAS starts a worker in every process
# that imports it, and pytest's faulthandler_timeout starts a watchdog thread per test
# (every wait in the suite is bounded by the tests' own timeouts; crashes still dump a
# traceback, only the watchdog is off).
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export ASAN_OPTIONS="detect_leaks=0:allow_user_segv_handler=1:handle_segv=0:handle_sigbus=0:abort_on_error=1:log_path=$WORK/reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$WORK/reports/ubsan"
export PATH="$VENV/bin:$PATH"
core=$("$VENV/bin/python" -c 'import mapshare._core as c; print(c.__file__)')
case $core in
"$VENV"/*) ;;
*) echo "sanitize: imported the wrong mapshare._core: $core" >&2; exit 1 ;;
esac
nm -D "$core" | grep -q __asan_init || { echo "sanitize: $core is not instrumented" >&2; exit 1; }
echo "sanitize: $core (ASan+UBSan)"
cd "$ROOT"
[ $# -gt 0 ] || set -- tests
status=0
"$VENV/bin/python" -m pytest -x -q -p no:cacheprovider -o faulthandler_timeout=0 "$@" || status=$?
if ls "$WORK/reports/" | grep -q .; then
    echo "sanitize: sanitizer reports:" >&2
    for f in "$WORK"/reports/*; do echo "--- $f" >&2; head -60 "$f" >&2; done
    status=1
fi
echo "sanitize: $(( $(date +%s) - start ))s, exit $status"
exit $status
