#!/usr/bin/env bash
# CPython's own multiprocessing tests against mapshare.multiprocessing (issue 16, part 4),
# with the interpreter given (default: python), from the test package that interpreter ships.
#
#   tools/cpython-tests.sh [PYTHON]
#
# Run from the repository root or anywhere (it cd's there); mapshare must be installed for
# PYTHON. CI runs it in stage 1b (3.11) and in every tools/matrix.sh cell (3.9, 3.10, 3.12,
# 3.13), in the venvs those already built. What it runs, chosen to stay near one minute per
# interpreter on 2 cores:
#
#   1. the queue, lock, semaphore, condition, event, barrier, Value/Array, shared-memory
#      and pool classes of test._test_multiprocessing with the *spawn* start method (every
#      object crosses to a fresh interpreter by pickling, the strictest of the three);
#   2. the ProcessPoolExecutor classes of test.test_concurrent_futures with *fork*, except
#      WaitTests (~20 s of timeouts that time concurrent.futures.wait, not the context).
#      3.11.7 and 3.12.1 as built here ship no test_concurrent_futures: part 2 says so and
#      runs nothing there.
#
# Left out (run them by hand: python -m tests.cpython --help): the forkserver start
# method, the multiprocessing classes under fork, the executor classes under spawn and
# forkserver, and WaitTests -- each would add about as much time again for code paths
# (start methods) the standard library already tests and the two runs above cross.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python}
export PYTHONDONTWRITEBYTECODE=1
# --timeout: one test hung for that long dumps every stack and ends the run; `timeout`: a
# run that cannot exit (a thread the exit path waits for) fails the stage (after 5 minutes) instead of hanging
status=0
timeout -k 10 300 "$PY" -m tests.cpython --start-method spawn --no-executor --timeout 120 --rerun \
    || status=1
timeout -k 10 300 "$PY" -m tests.cpython --start-method fork --timeout 120 --rerun ProcessPool \
    --exclude WaitTest || status=1
exit $status
