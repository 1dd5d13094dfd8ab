"""``mapshare journal dump|tail|verify|readers`` on real journals, as real subprocesses:
output formats, ``--json`` shapes, exit statuses, and ``tail --follow`` picking up what
another process appends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mapshare import Journal
from support import WINDOWS

# Under Wine every command is a Windows Python start (1-2 s): the tests that only check
# output formatting, which is the same code on every platform, run on POSIX only, to keep
# the Wine stage short.  The others (tail --follow across processes, commands while
# another process appends and truncates) run everywhere.
FORMAT_ONLY = pytest.mark.skipif(
    WINDOWS, reason="output formatting only, the same on every platform (Wine stage time)"
)

def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mapshare", "journal", *args], capture_output=True, text=True,
        errors="surrogateescape", timeout=timeout,  # records print raw, not always UTF-8
    )


@pytest.fixture
def journal(tmp_path: Path) -> str:
    """A journal of 301 records across several 4 KiB segment files, two named readers."""
    path = str(tmp_path / "j")
    with Journal.create(path, segment_size=4096) as j:
        for i in range(300):
            j.append(b"rec%d" % i)
        j.append(b"\xff\x00bin")
        r = j.reader("alice")
        next(iter(r))
        r.commit()
        j.reader("bob").commit(9)
    return path


@FORMAT_ONLY
def test_dump_prints_records_raw_hex_and_json(journal: str) -> None:
    r = cli("dump", journal, "--start", "2", "--count", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "rec2\nrec3\nrec4\n"
    assert cli("dump", journal, "--start", "299", "--end", "299").stdout == "rec299\n"
    lines = cli("dump", journal, "--start", "299", "--json").stdout.splitlines()
    assert [json.loads(x) for x in lines] == [
        {"index": 299, "size": 6, "text": "rec299"},
        {"index": 300, "size": 5, "base64": "/wBiaW4="},
    ]
    assert cli("dump", journal, "--start", "300", "--hex").stdout == "300\tff0062696e\n"
    everything = cli("dump", journal, "--json").stdout.splitlines()
    assert [json.loads(x)["index"] for x in everything] == list(range(301))


def test_tail_prints_the_newest_records(journal: str) -> None:
    r = cli("tail", journal, "-n", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["index"] for x in r.stdout.splitlines()] == [298, 299, 300]
    assert cli("tail", journal, "-n", "0").stdout == ""


def test_tail_follow_prints_what_another_process_appends(journal: str) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "mapshare", "journal", "tail", journal, "-n", "1", "--follow",
         "--timeout", "30", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert p.stdout is not None
        # the newest record first: the tail is open and following from here on
        assert json.loads(p.stdout.readline())["index"] == 300
        writer = subprocess.run(
            [sys.executable, "-c",
             "import sys\nfrom mapshare import Journal\n"
             "with Journal.open(sys.argv[1]) as j:\n"
             "    for i in range(50): j.append(b'live%d' % i)\n", journal],
            capture_output=True, text=True, timeout=60,
        )
        assert writer.returncode == 0, writer.stderr
        got = [json.loads(p.stdout.readline()) for _ in range(50)]
        assert [g["index"] for g in got] == list(range(301, 351))
        assert [g["text"] for g in got] == [f"live{i}" for i in range(50)]
    finally:
        p.kill()
        p.wait(60)
        if p.stdout is not None:
            p.stdout.close()
        if p.stderr is not None:
            p.stderr.close()


def test_tail_follow_stops_after_timeout(journal: str) -> None:
    r = cli("tail", journal, "-n", "1", "--follow", "--timeout", "0.2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "\udcff\x00bin\n"


def test_verify_passes_a_sound_journal_and_reports_a_damaged_record(journal: str) -> None:
    r = cli("verify", journal)
    assert r.returncode == 0, r.stderr
    assert "301 record(s), 0..300, 3 segment file(s)" in r.stdout and r.stdout.endswith(": ok\n")
    doc = json.loads(cli("verify", journal, "--json").stdout)
    assert doc["ok"] is True and doc["problems"] == []
    assert (doc["first"], doc["last"], doc["records_checked"], doc["files"]) == (0, 300, 301, 3)
    assert doc["segment_size"] == 4096 and doc["durability"] == "process"
    # flip one payload byte of a record in the second segment file: its checksum fails
    seg = os.path.join(journal, "0000000000000001.seg")
    with open(seg, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0x20]))
    r = cli("verify", journal)
    assert r.returncode == 1
    assert "1 bad record(s)" in r.stdout
    doc = json.loads(cli("verify", journal, "--json").stdout)
    assert doc["ok"] is False and len(doc["problems"]) == 1
    bad = doc["problems"][0]["index"]
    assert 0 < bad < 300
    # dump stops at the damaged record with a one-line error naming it, no traceback
    r = cli("dump", journal)
    assert r.returncode == 1
    assert r.stderr.startswith(f"mapshare journal dump: record {bad}:")
    assert "Traceback" not in r.stderr
    assert r.stdout.splitlines()[-1] == f"rec{bad - 1}"


def test_readers_lists_positions_and_lag(journal: str) -> None:
    r = cli("readers", journal)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["NAME", "POSITION", "LAG", "alice", "1", "300", "bob", "10",
                                "291"]
    assert json.loads(cli("readers", journal, "--json").stdout) == [
        {"name": "alice", "position": 1, "lag": 300},
        {"name": "bob", "position": 10, "lag": 291},
    ]


def test_readers_of_a_journal_without_any(tmp_path: Path) -> None:
    path = str(tmp_path / "empty")
    Journal.create(path, segment_size=4096).close()
    assert cli("readers", path).stdout == "no named readers\n"
    assert json.loads(cli("readers", path, "--json").stdout) == []
    assert cli("dump", path).stdout == ""
    doc = json.loads(cli("verify", path, "--json").stdout)
    assert (doc["ok"], doc["first"], doc["last"], doc["records_checked"]) == (True, 0, -1, 0)


@FORMAT_ONLY
def test_errors_are_one_line_with_the_documented_status(tmp_path: Path) -> None:
    r = cli("dump", str(tmp_path / "nope"))
    assert r.returncode == 3
    assert r.stderr.strip() == f"mapshare journal dump: no journal at {str(tmp_path / 'nope')!r}"
    (tmp_path / "notajournal").mkdir()
    (tmp_path / "notajournal" / "meta").write_bytes(b"x" * 8192)
    r = cli("verify", str(tmp_path / "notajournal"))
    assert r.returncode == 1
    assert "not a mapshare journal" in r.stderr and "Traceback" not in r.stderr
    r = cli("dump", str(tmp_path), "--start", "-1")
    assert r.returncode == 2
    r = cli("frobnicate", str(tmp_path))
    assert r.returncode == 2


def test_inspection_changes_nothing(journal: str) -> None:
    """The commands open read-only: no recovery, no reader registered, files unchanged."""
    def snapshot() -> dict[str, bytes]:
        return {n: Path(journal, n).read_bytes() for n in sorted(os.listdir(journal))}

    before = snapshot()
    for args in (("dump", journal), ("tail", journal), ("verify", journal),
                 ("readers", journal)):
        assert cli(*args).returncode == 0
    assert snapshot() == before


def test_commands_while_another_process_appends_and_truncates(tmp_path: Path) -> None:
    """Records removed under a running command (truncate_before in another process) are
    skipped, never a traceback: each command exits 0 and prints increasing indices."""
    path = str(tmp_path / "busy")
    with Journal.create(path, segment_size=4096) as j:
        for i in range(500):
            j.append(b"r%d" % i)
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom mapshare import Journal\n"
         "with Journal.open(sys.argv[1]) as j:\n"
         "    for k in range(40000):\n"
         "        j.append(b'w%d' % k)\n"
         "        if k % 50 == 0: j.truncate_before(len(j) - 300)\n", path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        runs = 0
        while writer.poll() is None or runs < 3:
            for args in (("dump", path, "--json"), ("tail", path, "-n", "400", "--json"),
                         ("verify", path)):
                r = cli(*args)
                assert r.returncode == 0, (args, r.stderr)
                assert "Traceback" not in r.stderr
                if args[0] != "verify":
                    idx = [json.loads(x)["index"] for x in r.stdout.splitlines()]
                    assert idx == sorted(set(idx)), args
            runs += 1
        _out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate(timeout=60)
