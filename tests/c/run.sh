#!/bin/sh
# Build and run the plain-C tests of the core (tests/c/test_core.c) under sanitizers.
#
#   tests/c/run.sh            # ASan+UBSan, then TSan
#   tests/c/run.sh asan|tsan|plain [test-name-substring ...]
#
# Links csrc/{segment,sync,ring,inspect}.c + csrc/platform/linux.c directly (no Python); the
# topic's tests (tests/c/test_topic.c, + csrc/topic.c), Latest's (test_latest.c, +
# csrc/latest.c), the array header parser's (test_array.c, + csrc/array.c) and the journal
# record core's (test_journal.c, + csrc/journal.c) are
# separate programs.  Builds
# into $MS_CTEST_BUILD (default /tmp/mapshare-ctest).  Each run ends with a line
# "N passed, M failed"; the script exits non-zero if any test or sanitizer failed.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${MS_CTEST_BUILD:-/tmp/mapshare-ctest}
CC=${CC:-gcc}
mkdir -p "$BUILD"
SRC="$HERE/test_core.c $ROOT/csrc/segment.c $ROOT/csrc/sync.c $ROOT/csrc/channel.c $ROOT/csrc/inspect.c $ROOT/csrc/platform/linux.c"
LATEST_SRC="$HERE/test_latest.c $ROOT/csrc/latest.c $ROOT/csrc/segment.c $ROOT/csrc/sync.c $ROOT/csrc/channel.c $ROOT/csrc/inspect.c $ROOT/csrc/platform/linux.c"
ARRAY_SRC="$HERE/test_array.c $ROOT/csrc/array.c"
JOURNAL_SRC="$HERE/test_journal.c $ROOT/csrc/journal.c"
TOPIC_SRC="$HERE/test_topic.c $ROOT/csrc/topic.c $ROOT/csrc/segment.c $ROOT/csrc/sync.c $ROOT/csrc/channel.c $ROOT/csrc/inspect.c $ROOT/csrc/platform/linux.c"
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
        # topic_publisher_killed_mid_write, topic_publisher_killed_in_commit,
        # topic_subscriber_killed_in_subscribe: as
        # lock_owner_died (a robust mutex of a dead
        # process); topic_concurrent_no_torn_reads: the subscriber's copy races with the
        # publisher's overwrite by design (the seqlock-style validation discards it), a
        # race TSan reports although nothing torn is ever used; latest_* likewise (the
        # Latest writer's lock of a dead process, the reader's validated racy copy, also
        # in latest_copy_in_steps_never_torn).
        skip="${MS_CTEST_TSAN_SKIP-lock_owner_died receiver_killed_in_view sigbus_guard topic_publisher_killed_mid_write topic_publisher_killed_in_commit topic_subscriber_killed_in_subscribe topic_concurrent_no_torn_reads latest_writer_killed_mid_write latest_concurrent_no_torn_reads latest_copy_in_steps_never_torn}" ;;
    plain)
        flags=""; env=""; skip="" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    for prog in test_core test_topic test_latest test_array test_journal; do
    case $prog in
    test_core) src=$SRC ;;
    test_topic) src=$TOPIC_SRC ;;
    test_latest) src=$LATEST_SRC ;;
    test_journal) src=$JOURNAL_SRC ;;
    *) src=$ARRAY_SRC ;;
    esac
    # shellcheck disable=SC2086
    $CC $BASE $flags -o "$BUILD/${prog}_$mode" $src -lpthread -lrt
    echo "== tests/c $prog ($mode)"
    # shellcheck disable=SC2086
    if ! env $env MS_CTEST_SKIP="$skip" "$BUILD/${prog}_$mode" "$@" >"$BUILD/out_${prog}_$mode" 2>&1; then
        status=1
    fi
    cat "$BUILD/out_${prog}_$mode"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$BUILD/out_${prog}_$mode" | tail -1)
    if [ -z "$line" ]; then
        echo "tests/c $prog ($mode): the test program died before its summary (sanitizer report above)"
        status=1
        line="0 passed, 1 failed"
    fi
    total_p=$((total_p + ${line%% passed*}))
    f=${line#*, }
    total_f=$((total_f + ${f%% failed}))
    done
done
[ $status -eq 0 ] || [ $total_f -gt 0 ] || total_f=1
echo "$total_p passed, $total_f failed"
exit $status
