#!/usr/bin/env bash
# Build and run the plain-C self-test of csrc/platform/windows.c under Wine
# (two and more Windows processes; no Python), then tests/c's array and Latest
# programs built for Windows.  Exit 0 when everything passed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
bash "$HERE/setup.sh" </dev/null
"${PYTHON:-python3}" "$HERE/build.py" --selftest
EXE="$ROOT/build/wine/platform_selftest.exe"

mapshare_wine_server_start
fault_file="/tmp/mapshare-selftest-fault-$$.bin"
trap 'rm -f "$fault_file"; mapshare_wine_server_stop' EXIT

rc=0
# a host symlink, to see whether Wine reports it as a reparse point
unix_link="/tmp/mapshare-selftest-link-$$.bin"
ln -sf /etc/hostname "$unix_link"
trap 'rm -f "$fault_file" "$unix_link"; mapshare_wine_server_stop' EXIT
MAPSHARE_SELFTEST_UNIX_LINK="$(mapshare_winpath "$unix_link")" \
    timeout --kill-after=10 300 wine "$EXE" </dev/null 2>&1 | cat || rc=$?

# A file truncated under a live view: Windows itself refuses that, so the truncation
# comes from the Linux side; Wine turns the SIGBUS into EXCEPTION_IN_PAGE_ERROR.
echo "[fault: file truncated by another (Linux) process under a mapped view]"
frc=0
timeout --kill-after=10 60 wine "$EXE" fault "$(mapshare_winpath "$fault_file")" </dev/null 2>&1 |
    while IFS= read -r line; do
        printf '  %s\n' "${line%$'\r'}"
        if [[ "$line" == READY* ]]; then truncate -s 0 "$fault_file"; fi
    done || frc=$?
# The plain-C tests of the array, Latest and journal-record cores (tests/c/test_array.c,
# test_latest.c, test_journal.c),
# cross-built with windows.c (build.py CTESTS): the same checks as tests/c/run.sh on
# Linux, minus the three Latest tests that fork (not built for Windows).
crc=0
for prog in test_array test_latest test_journal; do
    echo "[tests/c $prog under Wine]"
    timeout --kill-after=10 300 wine "$ROOT/build/wine/$prog.exe" </dev/null 2>&1 | cat || crc=1
done
echo "run-selftest.sh: main exit $rc, fault exit $frc, tests/c exit $crc"
[[ $rc -eq 0 && $frc -eq 0 && $crc -eq 0 ]]
