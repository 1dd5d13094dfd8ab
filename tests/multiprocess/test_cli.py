"""The ``mapshare`` command: ls, info, rm, gc and demo, both as a real subprocess
(``python -m mapshare``) and in-process through ``mapshare._cli.main``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import mapshare
from mapshare import _cli, _naming
from mapshare.testing import shm_entries
from support import NO_PERSISTENT_SHM, WINDOWS, exists, shm_path

TIMEOUT = 60.0

HOLDER = """
import sys, time, mapshare
seg = mapshare.Segment.create(sys.argv[1], 4096)
seg.write(b"held")
print("READY", flush=True)
time.sleep(600)
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mapshare", *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = _cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def killed_holder(name: str) -> Iterator[str]:
    """A 'shared' segment whose only holder was SIGKILLed."""
    if WINDOWS:
        pytest.skip("a killed last holder leaves nothing behind on Windows (the name "
                    "vanishes with its handles): nothing for gc")
    p = subprocess.Popen([sys.executable, "-c", HOLDER, name], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "READY"
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(TIMEOUT) == -signal.SIGKILL
        assert exists(name)
        yield name
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


# ---- ls ---------------------------------------------------------------------------------


def test_ls_subprocess(name: str) -> None:
    with mapshare.Segment.create(name, 5000):
        r = cli("ls")
        assert r.returncode == 0, r.stderr
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name + " "))
        assert "segment" in line and "shared" in line and "ready" in line
        assert f"{os.getpid()} (alive)" in line
        assert "NAME" in r.stdout.splitlines()[0]
    r = cli("ls")
    assert name not in r.stdout


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_ls_json_subprocess(name: str, tmp_path: object) -> None:
    with mapshare.Segment.create(name, 5000, lifetime="persistent") as seg:
        r = cli("ls", "--json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert isinstance(data, list)
        mine = [d for d in data if d["name"] == name]
        assert len(mine) == 1
        d = mine[0]
        assert d["kind"] == "segment" and d["size"] == 5000
        assert d["lifetime"] == "persistent" and d["state"] == "ready"
        assert d["creator_pid"] == os.getpid() and d["creator_alive"] is True
        assert d["os_name"] == _naming.os_name(name)
        assert d["mode"] == "0o600"
        assert {"pid": os.getpid(), "handles": 1, "alive": True} in d["attached"]
        assert d["created"]
        seg.unlink()


def test_ls_in_process(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with mapshare.Segment.create(name, 100):
        code, out, _ = run_main(capsys, "ls", "--json")
        assert code == 0
        assert [d["size"] for d in json.loads(out) if d["name"] == name] == [100]
        code, out, _ = run_main(capsys, "ls")
        assert code == 0 and name in out


# ---- info -------------------------------------------------------------------------------


def test_info_subprocess(name: str) -> None:
    with mapshare.Segment.create(name, 4096) as seg, mapshare.Segment.open(name):
        seg.notify()
        r = cli("info", name)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert f"name:        {name}" in out
        assert "kind:        segment" in out
        assert "size:        4096 bytes" in out
        assert "lifetime:    shared" in out
        assert "mode 0o600" in out
        assert f"creator:     pid {os.getpid()} (alive)" in out
        assert f"pid {os.getpid()}: 2 handle(s), alive" in out
        assert "changes:     1" in out
        assert "lock:        free" in out
        r = cli("info", name, "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["name"] == name and d["size"] == 4096 and d["change_count"] == 1
        assert d["attached"] == [{"pid": os.getpid(), "handles": 2, "alive": True}]


def test_info_in_process_and_missing(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "info", name)
    assert code == _cli.EXIT_NOT_FOUND and name in err and out == ""
    r = cli("info", name)
    assert r.returncode == _cli.EXIT_NOT_FOUND and name in r.stderr
    with mapshare.Channel.create(name, 4096) as ch:
        ch.send(b"queued")
        code, out, _ = run_main(capsys, "info", name, "--json")
        assert code == 0
        d = json.loads(out)
        assert d["kind"] == "channel" and d["extra"]["queued_messages"] == 1
        code, out, _ = run_main(capsys, "info", name)
        assert code == 0 and "depth:       1 message(s)" in out
        ch.unlink()


# ---- rm ---------------------------------------------------------------------------------


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_rm_subprocess(names: object) -> None:
    a, b = names(), names()  # type: ignore[operator]
    for n in (a, b):
        mapshare.Segment.create(n, 64, lifetime="persistent").close()
    r = cli("rm", a, b)
    assert r.returncode == 0, r.stderr
    assert f"removed {a}" in r.stdout and f"removed {b}" in r.stdout
    assert not exists(a) and not exists(b)
    r = cli("rm", a)
    assert r.returncode == _cli.EXIT_NOT_FOUND and "no segment named" in r.stderr


@pytest.mark.posix_only("rm removes the name at once (Windows: marks it destroyed; the name "
                        "goes with the last handle, see test_platform.py)")
def test_rm_in_process(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        code, out, _ = run_main(capsys, "rm", name)
        assert code == 0 and f"removed {name}" in out
        assert not exists(name)
        seg.write(b"still mapped")  # removing the name does not unmap anyone
        assert seg.read(12) == b"still mapped"
        with pytest.raises(mapshare.SegmentNotFoundError, match=re.escape(name)):
            mapshare.Segment.open(name)
    code, _, err = run_main(capsys, "rm", name)
    assert code == _cli.EXIT_NOT_FOUND and name in err


# ---- gc ---------------------------------------------------------------------------------


def test_gc_subprocess(killed_holder: str) -> None:
    name = killed_holder
    r = cli("gc", "--dry-run")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if f" {name} " in ln)
    assert line.startswith("would remove") and "dead" in line
    assert exists(name)
    r = cli("gc", "--dry-run", "--json")
    assert any(d["name"] == name for d in json.loads(r.stdout))
    r = cli("gc")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if f" {name} " in ln]
    assert len(lines) == 1, (r.stdout, exists(name))
    line = lines[0]
    assert line.startswith("removed") and "dead" in line
    assert not exists(name)
    r = cli("gc")
    assert name not in r.stdout


def test_gc_in_process(killed_holder: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = killed_holder
    code, out, _ = run_main(capsys, "gc", "--dry-run", "--json")
    assert code == 0
    assert [d["os_name"] for d in json.loads(out) if d["name"] == name] == [
        _naming.os_name(name)
    ]
    assert exists(name)
    code, out, _ = run_main(capsys, "gc")
    assert code == 0 and f"removed {name}" in out
    assert not exists(name)


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_gc_leaves_live_and_persistent(names: object, capsys: pytest.CaptureFixture[str]) -> None:
    live, pers = names(), names()  # type: ignore[operator]
    with mapshare.Segment.create(live, 64):
        mapshare.Segment.create(pers, 64, lifetime="persistent").close()
        try:
            code, out, _ = run_main(capsys, "gc")
            assert code == 0
            assert live not in out and pers not in out
            assert exists(live) and exists(pers)
        finally:
            os.unlink(shm_path(pers))


# ---- demo and usage ---------------------------------------------------------------------


def test_demo_subprocess_leaves_nothing() -> None:
    before = shm_entries()
    r = cli("demo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo ok" in r.stdout
    assert "Hello from process" in r.stdout
    assert not {e for e in shm_entries() - before if ".demo-" in e}


def test_demo_in_process_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    before = shm_entries()
    code, _, _ = run_main(capsys, "demo", "--quiet")
    assert code == 0
    assert not {e for e in shm_entries() - before if ".demo-" in e}


def test_usage_errors() -> None:
    r = cli()
    assert r.returncode == 2 and "usage" in r.stderr
    r = cli("nonsense")
    assert r.returncode == 2
    with pytest.raises(SystemExit) as exc:
        _cli.main(["info"])
    assert exc.value.code == 2


def test_cli_version() -> None:
    r = subprocess.run([sys.executable, "-m", "mapshare", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"mapshare {mapshare.__version__}"


# ---- topics: publish, subscribe, create topic, info -------------------------------------


def cli_in(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mapshare", *args], input=stdin,
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_topic_publish_then_late_subscribers_replay_history(name: str) -> None:
    """`create topic` (persistent), `publish` of stdin lines from one process that then
    exits, and late `subscribe` processes: --start history replays the newest 5, --start N
    from N, --json adds the sequence numbers."""
    try:
        r = cli("create", "topic", name, "--capacity", "64K", "--history", "5")
        assert r.returncode == 0, r.stderr
        assert f"created topic {name}" in r.stdout
        r = cli_in("".join(f"line {i}\n" for i in range(10)), "publish", name)
        assert (r.returncode, r.stdout) == (0, ""), r.stderr
        r = cli("subscribe", name, "--start", "history")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [f"line {i}" for i in range(5, 10)]
        r = cli("subscribe", name, "--start", "7", "--json")
        assert r.returncode == 0, r.stderr
        assert [json.loads(ln) for ln in r.stdout.splitlines()] == [
            {"seq": i, "size": 6, "text": f"line {i}"} for i in range(7, 10)
        ]
        r = cli("publish", name, "one more", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"seq": 10, "size": 8}
        r = cli("subscribe", name, "--start", "history", "--count", "2", "--hex")
        assert r.stdout.splitlines() == [b"line 6".hex(), b"line 7".hex()]
    finally:
        cli("rm", name)


@pytest.mark.posix_only(NO_PERSISTENT_SHM)
def test_topic_publish_create(name: str) -> None:
    try:
        r = cli("publish", name, "--create", "4096", "--history", "3", "hello", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"seq": 0, "size": 5}
        r = cli("publish", name, "--create", "4096", "--history", "3", "again", "--json")
        assert json.loads(r.stdout) == {"seq": 1, "size": 5}  # opened, not re-created
        with mapshare.Topic.open(name) as t:
            s = t.statistics()
            assert (s.capacity, s.history, s.overflow, s.published) == (
                4096, 3, "overwrite", 2)
            assert t.segment.info().lifetime == "persistent"
    finally:
        cli("rm", name)


def test_topic_subscribe_live_count_and_timeout(name: str) -> None:
    with mapshare.Topic.create(name, 4096) as t:
        p = subprocess.Popen(
            [sys.executable, "-m", "mapshare", "subscribe", name, "--count", "3", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + TIMEOUT
            while not any(r.pid == p.pid for r in t.statistics().subscribers):
                assert time.monotonic() < deadline and p.poll() is None
                time.sleep(0.01)
            for i in range(5):
                t.publish(b"m%d" % i)
            out, err = p.communicate(timeout=TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        assert p.returncode == 0, err
        assert [json.loads(ln)["seq"] for ln in out.splitlines()] == [0, 1, 2]
        # nothing published: --timeout ends it with status 0 and no output
        r = cli("subscribe", name, "--timeout", "0.2")
        assert (r.returncode, r.stdout) == (0, ""), r.stderr
        assert t.statistics().subscribers == ()  # the CLI's subscriber left on exit
        t.unlink()


@pytest.mark.posix_only("SIGSTOP")
def test_topic_subscribe_follow_reports_lagged_on_stderr_and_goes_on(name: str) -> None:
    """A `subscribe --follow --json` process is stopped while 1000 messages go by: on
    resuming it prints one 'lagged' line on stderr with the exact count missed, then
    the newest messages, contiguous."""
    n = 1000
    with mapshare.Topic.create(name, 4096) as t:
        p = subprocess.Popen(
            [sys.executable, "-m", "mapshare", "subscribe", name, "--follow", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + TIMEOUT
            while not any(r.pid == p.pid for r in t.statistics().subscribers):
                assert time.monotonic() < deadline and p.poll() is None
                time.sleep(0.01)
            os.kill(p.pid, signal.SIGSTOP)
            for i in range(n):
                t.publish(b"message %04d" % i)
            os.kill(p.pid, signal.SIGCONT)
            assert p.stdout is not None
            seqs: list[int] = []
            while not seqs or seqs[-1] != n - 1:
                seqs.append(json.loads(p.stdout.readline())["seq"])
            os.kill(p.pid, signal.SIGINT)
            _, err = p.communicate(timeout=TIMEOUT)
        finally:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.communicate()
        assert p.returncode == _cli.EXIT_INTERRUPTED
        missed = seqs[0]
        assert seqs == list(range(missed, n))
        lines = [ln for ln in err.splitlines() if "lagged" in ln]
        assert lines == [f"mapshare subscribe: lagged: missed {missed} message(s), "
                         f"resuming at {missed}"], err
        assert "Traceback" not in err
        t.unlink()


def test_topic_info_and_ls_show_subscribers_and_lag(name: str) -> None:
    """`info` shows the topic's geometry, counters and one row per subscriber (pid,
    alive, position, lag, missed) -- from another process; `--json` the same as data;
    `ls` lists it as a topic."""
    with mapshare.Topic.create(name, 8192, history=4, overflow="block") as t:
        for i in range(10):
            t.publish(b"x%d" % i)
        with t.subscribe(start="history") as sub:
            assert sub.receive(timeout=5) == b"x6"
            r = cli("info", name)
            assert r.returncode == 0, r.stderr
            out = r.stdout
            assert "kind:        topic" in out
            assert "capacity:    8192 bytes of ring" in out
            assert "overflow:    block" in out
            assert "history:     4 message(s)" in out
            assert "published:   10 message(s)" in out
            assert "subscribers: 1" in out
            row = next(ln.split() for ln in out.splitlines()
                       if ln.strip().startswith(str(os.getpid())))
            assert row == [str(os.getpid()), "alive", "7", "3", "0", "1"]
            r = cli("info", name, "--json")
            x = json.loads(r.stdout)["extra"]
            assert (x["capacity"], x["overflow"], x["history"], x["published"]) == (
                8192, "block", 4, 10)
            assert x["subscribers"] == [{"pid": os.getpid(), "alive": True, "position": 7,
                                         "lag": 3, "missed": 0, "received": 1,
                                         "upstream_missed": 0}]
            r = cli("ls")
            line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name + " "))
            assert " topic " in line
            r = cli("ls", "--json")
            mine = [d for d in json.loads(r.stdout) if d["name"] == name]
            assert mine[0]["kind"] == "topic"
            assert mine[0]["extra"]["subscribers"][0]["lag"] == 3
        t.unlink()


def test_topic_publish_block_mode_timeout_says_how_many(name: str) -> None:
    with mapshare.Topic.create(name, 4096, overflow="block") as t, t.subscribe():
        r = cli_in("".join(f"{i:0100d}\n" for i in range(200)), "publish", name,
                   "--timeout", "0.2")
        assert r.returncode == _cli.EXIT_ERROR
        assert "Traceback" not in r.stderr
        m = re.search(r"stdin line (\d+): .* (\d+) message\(s\) published", r.stderr)
        assert m is not None, r.stderr
        assert int(m.group(2)) == int(m.group(1)) - 1 == t.statistics().published
        t.unlink()


def test_topic_commands_on_a_channel_or_nothing(name: str) -> None:
    r = cli("subscribe", name)
    assert r.returncode == _cli.EXIT_NOT_FOUND and name in r.stderr
    r = cli("publish", name, "x")
    assert r.returncode == _cli.EXIT_NOT_FOUND and name in r.stderr
    with mapshare.Channel.create(name, 4096) as ch:
        r = cli("subscribe", name, "--timeout", "0")
        assert r.returncode == _cli.EXIT_ERROR and "Traceback" not in r.stderr
        r = cli("subscribe", name, "--start", "soon")
        assert r.returncode == _cli.EXIT_USAGE
        ch.unlink()
