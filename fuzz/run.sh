#!/bin/sh
# Coverage-guided fuzzing of the C core with libFuzzer (clang).
#
#   fuzz/run.sh [SECONDS]      # total budget, split between the seven harnesses (default 90)
#
# Builds fuzz_header, fuzz_ring, fuzz_interleave, fuzz_topic, fuzz_latest, fuzz_array and
# fuzz_journal with -fsanitize=fuzzer,address,undefined
# (UBSan non-recoverable) into $MS_FUZZ_BUILD (default /tmp/mapshare-fuzz), replays the
# committed corpus (fuzz/corpus/<harness>/, including regression inputs) and fuzzes each
# harness for SECONDS/7 seconds.  New inputs go to a scratch corpus under the build dir,
# never into the repository.  Exits non-zero on any crash, sanitizer report, invariant
# failure, leak or timeout; the reproducer is written to $MS_FUZZ_BUILD/artifacts/.
# Needs clang with libFuzzer (Debian: apt-get install clang).
set -eu
SECONDS_TOTAL=${1:-90}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${MS_FUZZ_BUILD:-/tmp/mapshare-fuzz}
CC=${CC_FUZZ:-clang}
mkdir -p "$BUILD/artifacts"
SRC="$ROOT/csrc/segment.c $ROOT/csrc/sync.c $ROOT/csrc/channel.c $ROOT/csrc/topic.c $ROOT/csrc/latest.c $ROOT/csrc/array.c $ROOT/csrc/inspect.c $ROOT/csrc/journal.c $ROOT/csrc/platform/linux.c"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -I$ROOT/csrc -I$ROOT/tests/c"
HARNESSES="header ring interleave topic latest array journal"
for h in $HARNESSES; do
    # shellcheck disable=SC2086
    $CC $FLAGS -o "$BUILD/fuzz_$h" "$HERE/fuzz_$h.c" $SRC -lpthread -lrt
done
PER=$((SECONDS_TOTAL / 7))
[ "$PER" -ge 1 ] || PER=1
# handle_segv/handle_sigbus=0: the core's SIGBUS guard (ms_p_guarded_call) must keep
# its own handler.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allow_user_segv_handler=1:handle_sigbus=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for h in $HARNESSES; do
    mkdir -p "$BUILD/corpus-$h"
    echo "== fuzz_$h: ${PER}s"
    if ! "$BUILD/fuzz_$h" -max_total_time="$PER" -timeout=10 -max_len=5000 \
            -artifact_prefix="$BUILD/artifacts/$h-" -print_final_stats=1 \
            "$BUILD/corpus-$h" "$HERE/corpus/$h" 2>"$BUILD/fuzz_$h.log"; then
        status=1
        tail -40 "$BUILD/fuzz_$h.log"
        echo "fuzz_$h: FAILED (log: $BUILD/fuzz_$h.log, reproducer in $BUILD/artifacts/)"
    else
        grep -E "^#[0-9]+.*(DONE|cov:)" "$BUILD/fuzz_$h.log" | tail -1
        grep -E "stat::number_of_executed_units" "$BUILD/fuzz_$h.log" || true
    fi
done
if [ $status -eq 0 ]; then echo "fuzz: no crash"; else echo "fuzz: CRASH FOUND"; fi
exit $status
