"""mapshare.Journal across processes: appenders SIGKILLed at random points, named readers
killed and resumed, 4 appenders x 4 readers across rolls, a full disk at roll time.
The 1,000-kill version is tools/soak_journal.py."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _journal_children import (
    appender,
    check,
    die_mid_reserve,
    die_mid_roll,
    named_reader,
    reader,
    record,
)

import mapshare
from support import ROOT, mp_context, stop

SEG = 8192


def read_lines(fd: int) -> list[list[int]]:
    """Every complete line a killed child wrote to the pipe."""
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return [[int(x) for x in line.split()] for line in data.split(b"\n")[:-1]]


def kill_appender_once(
    path: str, writer: int, rng: random.Random, j: mapshare.Journal
) -> list[list[int]]:
    """Start an appender, SIGKILL it at a random moment once it has appended (so that
    every round kills a working appender, however loaded the machine), return what it
    acknowledged."""
    ctx = mp_context("fork")
    rfd, wfd = os.pipe()
    before = len(j)
    p = ctx.Process(target=appender, args=(path, writer, -1, wfd))
    p.start()
    os.close(wfd)
    try:
        deadline = time.monotonic() + 60
        while len(j) == before and time.monotonic() < deadline and p.is_alive():
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(p.pid or 0, signal.SIGKILL)
        p.join(30)
    finally:
        stop([p])
    return read_lines(rfd)


def verify(j: mapshare.Journal, acked: dict[int, tuple[int, int]]) -> None:
    """Every acknowledged index holds what its appender wrote; every index is intact."""
    for i in range(len(j)):
        w, n = check(j[i])
        if i in acked:
            assert (w, n) == acked[i], i


@pytest.mark.needs_fork
@pytest.mark.parametrize("durability,rounds", [("process", 12), ("os-batch", 6), ("os", 4)])
def test_appender_killed_at_random_points(
    tmp_path: Path, durability: str, rounds: int
) -> None:
    path = str(tmp_path / "j")
    rng = random.Random(len(durability))
    acked: dict[int, tuple[int, int]] = {}
    with mapshare.Journal.create(path, segment_size=SEG, durability=durability) as j:  # type: ignore[arg-type]
        follower = j.reader()
        for writer in range(1, rounds + 1):
            for i, n in kill_appender_once(path, writer, rng, j):
                acked[i] = (writer, n)
            # the living are not blocked: the next append repairs what the dead left
            k = j.append(record(0, writer, 10))
            acked[k] = (0, writer)
            assert k == len(j) - 1
            # a reader following the tail reaches it: no stall, no hole, nothing torn
            while follower.position <= k:
                _idx, view = follower.next(timeout=30)
                check(bytes(view))
        verify(j, acked)
        assert len(acked) > rounds  # the appenders got some appends in
    with mapshare.Journal.open(path) as j:  # and a fresh open agrees
        assert j.recovered is None or j.recovered.records_dropped == 0
        verify(j, acked)


@pytest.mark.needs_fork
@pytest.mark.parametrize("durability", ["process", "os"])
def test_appender_killed_mid_reserve(tmp_path: Path, durability: str) -> None:
    path = str(tmp_path / "j")
    ctx = mp_context("fork")
    with mapshare.Journal.create(path, segment_size=SEG, durability=durability) as j:  # type: ignore[arg-type]
        follower = j.reader()
        p = ctx.Process(target=die_mid_reserve, args=(path, 10))
        p.start()
        p.join(60)
        assert p.exitcode == -signal.SIGKILL
        assert len(j) == 10  # the half-copied record is not visible
        # the next appender gets the lock (owner died), repairs, and takes index 10
        assert j.append(record(0, 0, 5)) == 10
        for i in range(11):
            idx, view = follower.next(timeout=30)
            assert idx == i
            assert check(bytes(view)) == ((9, i) if i < 10 else (0, 0))
    with mapshare.Journal.open(path) as j:
        assert j.recovered is None and len(j) == 11


@pytest.mark.needs_fork
@pytest.mark.parametrize("durability", ["process", "os", "os-batch"])
def test_appender_killed_mid_roll(tmp_path: Path, durability: str) -> None:
    path = str(tmp_path / "j")
    ctx = mp_context("fork")
    with mapshare.Journal.create(path, segment_size=SEG, durability=durability) as j:  # type: ignore[arg-type]
        p = ctx.Process(target=die_mid_roll, args=(path,))
        p.start()
        p.join(60)
        assert p.exitcode == -signal.SIGKILL
        n = len(j)
        assert n > 10 and j.stats().files == 1  # the roll was never published
        assert os.path.exists(os.path.join(path, "0000000000000001.seg"))
        for _ in range(3 * n):  # the next appender rolls over the dead one's file
            j.append(record(0, 0, 30))
        assert j.stats().files >= 3
        for i in range(len(j)):
            check(j[i])
    with mapshare.Journal.open(path) as j:
        assert j.recovered is None and len(j) == 4 * n


@pytest.mark.needs_fork
def test_named_reader_resumes_after_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    ctx = mp_context("fork")
    rng = random.Random(7)
    with mapshare.Journal.create(path, segment_size=SEG) as j:
        for n in range(3000):
            j.append(record(0, n, 20))
        stored = 0
        for _ in range(3):
            rfd, wfd = os.pipe()
            p = ctx.Process(target=named_reader, args=(path, "worker", wfd))
            p.start()
            os.close(wfd)
            try:
                time.sleep(rng.uniform(0.01, 0.05))
                os.kill(p.pid or 0, signal.SIGKILL)
                p.join(30)
            finally:
                stop([p])
            seen = [line[0] for line in read_lines(rfd)]
            assert not seen or seen[0] in (stored, stored + 1)  # resumed where it was
            last = seen[-1] if seen else stored - 1
            stored = j.reader("worker").position
            # commit(i) runs before i is reported: at most one commit is unreported
            assert stored in (last + 1, last + 2), (stored, last)
            assert seen == sorted(set(seen))
        assert j.readers()[0].name == "worker"


@pytest.mark.needs_fork
def test_four_appenders_four_readers_across_rolls(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    ctx = mp_context("fork")
    per = 250
    with mapshare.Journal.create(path, segment_size=16384) as j:
        q: Any = ctx.Queue()
        readers = [ctx.Process(target=reader, args=(path, 4 * per, q)) for _ in range(4)]
        pipes = [os.pipe() for _ in range(4)]
        appenders = [
            ctx.Process(target=appender, args=(path, w, per, pipes[w][1])) for w in range(4)
        ]
        try:
            for p in readers + appenders:
                p.start()
            for _, wfd in pipes:
                os.close(wfd)
            results = [q.get(timeout=300) for _ in readers]
            for p in readers + appenders:
                p.join(60)
                assert p.exitcode == 0
        finally:
            stop(readers + appenders)
            q.close()
            q.join_thread()
        for r in results:
            assert r == (4 * per, {w: per - 1 for w in range(4)}), r
        acked = {}
        for w, (rfd, _) in enumerate(pipes):
            lines = read_lines(rfd)
            assert len(lines) == per
            acked.update({i: (w, n) for i, n in lines})
        assert sorted(acked) == list(range(4 * per))  # dense, one total order
        verify(j, acked)
        assert j.stats().files > 4  # it rolled several times


@pytest.mark.root
@pytest.mark.posix_only("mounts a tmpfs")
@pytest.mark.skipif(not ROOT, reason="mounting a small tmpfs needs root")
def test_full_disk_fails_at_roll_with_no_space(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(disk)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        with mapshare.Journal.create(disk / "j", segment_size=256 * 1024) as j:
            n = 0
            with pytest.raises(mapshare.NoSpaceError, match="no space"):
                while True:
                    j.append(bytes(1000))
                    n += 1
            assert len(j) == n and n > 500
            assert j[n - 1] == bytes(1000)  # everything acknowledged is still there
            with pytest.raises(mapshare.NoSpaceError):
                j.append(bytes(1000))  # still full: an exception again, never SIGBUS
        with mapshare.Journal.open(disk / "j") as j:
            assert len(j) == n
    finally:
        subprocess.run(["umount", str(disk)], check=True)


_ENDS_WITHOUT_CLOSING = """
import sys
import mapshare
j = mapshare.Journal.create(sys.argv[1], segment_size=65536)
for i in range(3):
    j.append(b"rec%d" % i)
r = j.reader("worker")
r.next()
r.next()
r.commit()
# the script ends here: nothing closed
"""


@pytest.mark.parametrize("how", ["ends", "sigkill"])
def test_a_script_that_ends_or_is_killed_leaves_a_journal_others_use_at_once(
    tmp_path: Path, how: str
) -> None:
    path = str(tmp_path / "j")
    code = _ENDS_WITHOUT_CLOSING
    if how == "sigkill":
        # 9: SIGKILL on POSIX; on Windows os.kill is TerminateProcess with exit code 9,
        # as abrupt (no cleanup runs)
        code += "import os\nos.kill(os.getpid(), 9)\n"
    p = subprocess.run([sys.executable, "-c", code, path], capture_output=True,
                       text=True, timeout=60)
    if how == "ends":
        assert p.returncode == 0, p.stderr
        assert p.stderr == ""
    else:
        assert p.returncode == (9 if os.name == "nt" else -signal.SIGKILL)
    with mapshare.Journal.open(path) as j:
        # everything it appended is there, nothing was torn, nothing to drop
        assert [j[i] for i in range(len(j))] == [b"rec0", b"rec1", b"rec2"]
        assert j.recovered is None or j.recovered.records_dropped == 0
        # the named reader resumes after its commit; appending is not blocked
        assert j.reader("worker").position == 2
        t0 = time.monotonic()
        assert j.append(b"next") == 3
        assert time.monotonic() - t0 < 5


_HOLDS_THE_LOCK = """
import sys, time
import mapshare
j = mapshare.Journal.open(sys.argv[1])
with j.reserve(100) as buf:
    buf[:60] = b"x" * 60
    print("HELD", flush=True)
    time.sleep(120)
"""


def test_appender_killed_holding_the_lock_blocks_nobody(tmp_path: Path) -> None:
    """A process killed (SIGKILL; TerminateProcess on Windows) inside reserve(), holding
    the append lock with a partial record written: the next appender gets the lock through
    the robust lock (the kernel's robust futex list; on Windows an abandoned named mutex,
    or the holder the lock area still names), repairs the tail and appends at the next
    index; the partial record is never visible."""
    path = str(tmp_path / "j")
    with mapshare.Journal.create(path, segment_size=SEG) as j:
        for i in range(3):
            j.append(b"rec%d" % i)
        p = subprocess.Popen([sys.executable, "-c", _HOLDS_THE_LOCK, path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "HELD", (line, p.stderr.read() if p.stderr else "")
            p.kill()
            p.wait(60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(60)
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()
        assert j.append(b"after") == 3
        assert [j[i] for i in range(len(j))] == [b"rec0", b"rec1", b"rec2", b"after"]
    with mapshare.Journal.open(path) as j:
        assert j.recovered is None
        assert len(j) == 4


_BATCH_APPENDER = """
import sys
import mapshare
with mapshare.Journal.open(sys.argv[1]) as j:
    for i in range(40):
        j.append(b"%s-%d" % (sys.argv[2].encode(), i))
    print(j.sync(), flush=True)
"""


def test_os_batch_appenders_in_two_processes_share_the_flush(tmp_path: Path) -> None:
    """Two processes append in "os-batch" mode at once (the group-commit flush lock is an
    flock; LockFileEx on Windows): every record lands once, in one dense order, and
    everything is durable at the end."""
    path = str(tmp_path / "j")
    with mapshare.Journal.create(path, segment_size=SEG, durability="os-batch") as j:
        procs = [subprocess.Popen([sys.executable, "-c", _BATCH_APPENDER, path, name],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
            assert int(out) >= 39
        assert len(j) == 80
        got = sorted(j[i] for i in range(80))
        assert got == sorted(b"%s-%d" % (n, i) for n in (b"a", b"b") for i in range(40))
        for n in (b"a", b"b"):  # each appender's records in its own order
            mine = [j[i] for i in range(80) if j[i].startswith(n + b"-")]
            assert mine == [b"%s-%d" % (n, i) for i in range(40)]
        assert j.stats().durable == 79
