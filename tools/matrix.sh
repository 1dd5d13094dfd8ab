#!/usr/bin/env bash
# The Python matrix: build mapshare and run the core test selection and CPython's own
# multiprocessing tests on every CPython the package claims besides 3.11 (which CI stage 1
# covers), against both numpy majors.
#
#   tools/matrix.sh                 all cells below
#   tools/matrix.sh 3.9:1 3.13:2    chosen cells (PYTHON:NUMPY_MAJOR[:core])
#
# Scope: every cell runs the one-process tests and the cross-process tests of each kind
# (":core", the wheel stage's selection plus the mp drop-in's), and CPython's own
# multiprocessing tests of that interpreter. The whole suite runs on 3.11 (stage 1, and
# under ASan in stage 5) and on Windows' 3.11 under Wine (stage 8). An interpreter other
# than 3.11 differs in what the core selection exercises (its headers for the extension
# build, its syntax and typing, its pickle and multiprocessing, the numpy line); the whole
# suite again cost ~4.5 min of CI per cell (3.9 and 3.13 ran it whole until a CI run
# reached 50 minutes; the budget is 45).

# Cells: each Python appears once, and each numpy major at both ends of the range.
#   3.9  + numpy 1.x   the floor, with the oldest numpy line the package still meets
#   3.10 + numpy 2.x   numpy 2 on an old Python (numpy 2.0-2.2 still ship 3.10 wheels)
#   3.12 + numpy 1.x   the newest Python numpy 1.26 (the last 1.x) supports
#   3.13 + numpy 2.x   the newest Python; numpy 1.x has no 3.13 wheels
#
# Each cell: a fresh venv, `pip install ".[test]"` with numpy pinned to the major (a wheel:
# never a numpy source build), then `python -m pytest -q -W error::DeprecationWarning` from the
# source tree -- the suite imports the installed mapshare, not src/ -- and then
# tools/cpython-tests.sh: CPython's own multiprocessing tests of that interpreter against
# mapshare.multiprocessing (issue 16).
#
# The interpreters are looked up on PATH (python3.X), then under pyenv
# ($(pyenv root)/versions/3.X.*). A missing one fails the stage with what to install: this
# script downloads packages from PyPI only, never an interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

DEFAULT_CELLS="3.9:1:core 3.10:2:core 3.12:1:core 3.13:2:core"
# what a ":core" cell runs (the same selection as CI's wheel stage, .ci/run 3c)
CORE_TESTS="tests/unit tests/typing tests/multiprocess/test_segment_processes.py
    tests/multiprocess/test_lock_processes.py tests/multiprocess/test_channel_processes.py
    tests/multiprocess/test_notify_processes.py tests/multiprocess/test_mp_processes.py"

# shellcheck source=tools/matrix-pythons.sh
. tools/matrix-pythons.sh

numpy_spec() {
    case $1 in
        1) echo "numpy>=1.21,<2" ;;
        2) echo "numpy>=2,<3" ;;
        *) echo "unknown numpy major '$1'" >&2; return 1 ;;
    esac
}

cells=${*:-$DEFAULT_CELLS}

# Find every interpreter first, so a missing one fails before any cell has run.
missing=""
declare -A PY
for cell in $cells; do
    ver=${cell%%:*}
    if py=$(find_python "$ver"); then
        PY[$ver]=$py
    else
        missing="$missing $ver"
    fi
done
if [ -n "$missing" ]; then
    {
        echo "matrix: no CPython$missing found (looked for python3.X on PATH and under"
        echo "  \$(pyenv root)/versions/3.X.*). Install each, e.g.:"
        for ver in $missing; do
            echo "    pyenv install $ver      # or your distribution's python$ver and python$ver-venv"
        done
        echo "  then run tools/matrix.sh again."
    } >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/mapshare-matrix-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
summary=()
failed=0
for cell in $cells; do
    ver=${cell%%:*}
    np=${cell#*:}
    scope=full
    case $np in *:core) np=${np%%:*}; scope=core ;; esac
    # shellcheck disable=SC2086
    if [ "$scope" = core ]; then set -- $CORE_TESTS; else set --; fi
    spec=$(numpy_spec "$np")
    py=${PY[$ver]}
    printf '\n---- Python %s (%s) + %s, %s suite ----  (%s)\n' "$ver" "$py" "$spec" "$scope" \
        "$(date -u +%H:%M:%S)"
    venv=$WORK/py$ver
    "$py" -m venv "$venv"
    # a copy of the tree per cell: pip builds in place, and a build/ left by one Python's
    # setuptools must not feed another's
    src=$WORK/src$ver
    mkdir -p "$src"
    git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src"
    # a C-API function a Python's public headers no longer declare must fail the build
    # (gcc 12 only warns about the implicit declaration, and pip -q hides the warning)
    CFLAGS="-Werror=implicit-function-declaration" \
        "$venv/bin/python" -m pip install -q --only-binary=numpy "$src[test]" "$spec"
    "$venv/bin/python" -c 'import sys, numpy, mapshare
print("python", sys.version.split()[0], "numpy", numpy.__version__, "mapshare", mapshare.__version__, mapshare.__file__)
assert "site-packages" in mapshare.__file__, mapshare.__file__'
    # -W error::DeprecationWarning: a deprecation this Python reports is a failure here,
    # before it becomes a removal in the next Python
    npver=$("$venv/bin/python" -c 'import numpy; print(numpy.__version__)')
    # every cell runs even if one fails, so that one run shows the whole matrix.
    # The crash matrix runs every operation here too, with 25 kills each rather than 100:
    # a cell checks this interpreter and numpy; stage 1 holds the statistics.
    # -m "not netns": the network-namespace bridge tests (pure Python over zenoh, ~1 min)
    # run once, in stage 1; eight more runs here would add minutes and test nothing new.
    if (cd "$src" && MAPSHARE_CRASH_N=${MAPSHARE_CRASH_N:-25} "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        -W error::DeprecationWarning -m "not netns" "$@") >"$WORK/out" 2>&1; then
        result=passed
    else
        result=FAILED
        failed=$((failed + 1))
    fi
    cat "$WORK/out"
    # CPython's own multiprocessing tests, from this interpreter's test package, against
    # mapshare.multiprocessing (issue 16; tools/cpython-tests.sh says what it runs)
    if (cd "$src" && bash tools/cpython-tests.sh "$venv/bin/python") >"$WORK/cpython" 2>&1; then
        cpython=passed
    else
        cpython=FAILED
        failed=$((failed + 1))
    fi
    cat "$WORK/cpython"
    summary+=("Python $ver + numpy $npver, $scope suite: $result ($(tail -1 "$WORK/out" | tr -d '=')); CPython's multiprocessing tests: $cpython")
    # the summary is the end of CI's log, which is often all that is kept: say there what
    # failed, not only that something did
    if [ "$result" = FAILED ]; then
        while IFS= read -r line; do summary+=("    $line"); done \
            < <(grep -E '^(FAILED|ERROR) ' "$WORK/out" | head -20)
    fi
    if [ "$cpython" = FAILED ]; then
        while IFS= read -r line; do summary+=("    $line"); done < <(grep -E \
            '^(FAIL|ERROR): |^failed again: |^left in /dev/shm|^Timeout|^Ran |^(OK|FAILED)|^Terminated|^Fatal' \
            "$WORK/cpython" | head -20)
    fi
    rm -rf "$venv" "$src"
done
printf '\n---- matrix ----\n'
printf '%s\n' "${summary[@]}"
[ "$failed" -eq 0 ]
