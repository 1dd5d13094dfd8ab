#!/bin/sh
# Build and run the plain-C tests of the core (tests/c/test_core.c) under sanitizers.
#
#   tests/c/run.sh            # ASan+UBSan, then TSan
#   tests/c/run.sh asan|tsan|plain [test-name-substring ...]
#
# Links csrc/{segment,sync,ring,inspect}.c + csrc/platform/linux.c directly (no Python).  Builds
# into $MS_CTEST_BUILD (default /tmp/mapshare-ctest).  Each run ends with a line
# "N passed, M failed"; the script exits non-zero if any test or sanitizer failed.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${MS_CTEST_BUILD:-/tmp/mapshare-ctest}
CC=${CC:-gcc}
mkdir -p "$BUILD"
SRC="$HERE/test_core.c $ROOT/csrc/segment.c $ROOT/csrc/sync.c $ROOT/csrc/channel.c $ROOT/csrc/inspect.c $ROOT/csrc/platform/linux.c"
BASE="-std=gnu11 -g -O1 -Wall -Wextra -Wno-missing-field-initializers -fno-strict-aliasing -fno-omit-frame-pointer -I$ROOT/csrc -I$HERE"
modes=${1:-all}
[ $# -gt 0 ] && shift
[ "$modes" = all ] && modes="asan tsan"
status=0
total_p=0
total_f=0
for mode in $modes; do
    case $mode in
    asan)
        flags="-fsanitize=address,undefined -fno-sanitize-recover=all"
        # handle_segv/handle_sigbus=0 + allow_user_segv_handler: our SIGBUS guard keeps
        # its handler (test sigbus_guard).
        env="ASAN_OPTIONS=detect_leaks=1:allow_user_segv_handler=1:handle_segv=0:handle_sigbus=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
        skip="" ;;
    tsan)
        flags="-fsanitize=thread -Wno-tsan"
        # Skipped under TSan (they run under ASan): lock_owner_died and
        # receiver_killed_in_view -- TSan cannot see that a robust mutex was locked by
        # another (dead) process and reports the survivor's unlock as "unlock of an
        # unlocked mutex"; sigbus_guard -- TSan's signal interception does not deliver
        # the synchronous SIGBUS to our sigsetjmp guard ("Bus error").  pthread_mutex_
        # clocklock, which gcc 12's TSan does not intercept, is interposed in
        # test_core.c for this build.
        env="TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1"
        skip="${MS_CTEST_TSAN_SKIP-lock_owner_died receiver_killed_in_view sigbus_guard}" ;;
    plain)
        flags=""; env=""; skip="" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    # shellcheck disable=SC2086
    $CC $BASE $flags -o "$BUILD/test_core_$mode" $SRC -lpthread -lrt
    echo "== tests/c ($mode)"
    # shellcheck disable=SC2086
    if ! env $env MS_CTEST_SKIP="$skip" "$BUILD/test_core_$mode" "$@" >"$BUILD/out_$mode" 2>&1; then
        status=1
    fi
    cat "$BUILD/out_$mode"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$BUILD/out_$mode" | tail -1)
    if [ -z "$line" ]; then
        echo "tests/c ($mode): the test program died before its summary (sanitizer report above)"
        status=1
        line="0 passed, 1 failed"
    fi
    total_p=$((total_p + ${line%% passed*}))
    f=${line#*, }
    total_f=$((total_f + ${f%% failed}))
done
[ $status -eq 0 ] || [ $total_f -gt 0 ] || total_f=1
echo "$total_p passed, $total_f failed"
exit $status
