"""The ``mapshare`` command never prints a traceback.  Each case runs the
real installed command (``mapshare``, the console script) in a subprocess and checks the
exit status, that stderr names the logical name, and that no "Traceback" appears."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any, Optional

import pytest

import mapshare
from mapshare import _cli, _naming
from support import LINUX

TIMEOUT = 60.0
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "mapshare")
# the console script pip installed next to this Python (under Wine: python -m mapshare)
EXE = shutil.which("mapshare") or (_SCRIPT if os.path.exists(_SCRIPT) else None)
COMMAND = [EXE] if EXE else [sys.executable, "-m", "mapshare"]


def run(*args: str, stdin: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run(
        [*COMMAND, *args], input=stdin, capture_output=True, timeout=TIMEOUT, check=False
    )
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    assert b"Exception ignored" not in r.stderr, r.stderr.decode()
    return r


@pytest.mark.parametrize(
    "bad", ["bad/name", "", "x" * 256, ".hidden", "-dash", "spa ce", "/etc/passwd"]
)
@pytest.mark.parametrize("command", ["info", "rm", "send", "receive"])
def test_bad_names_are_usage_errors(command: str, bad: str) -> None:
    extra = ["data"] if command == "send" else ["--timeout", "0"] if command == "receive" else []
    # "--" so that "-dash" is a name, not an option, to argparse
    r = run(command, *extra[1:], "--", bad, *extra[:1]) if command == "send" else run(
        command, *extra, "--", bad
    )
    assert r.returncode == _cli.EXIT_USAGE, r.stderr
    assert b"invalid name" in r.stderr and repr(bad).encode() in r.stderr


def test_bad_name_for_create() -> None:
    r = run("create", "channel", "bad/name", "--capacity", "4096")
    assert r.returncode == _cli.EXIT_USAGE and b"invalid name 'bad/name'" in r.stderr


def test_missing_names_use_the_logical_name(name: str) -> None:
    for args in (("info", name), ("rm", name), ("send", name, "x"), ("receive", name)):
        r = run(*args)
        assert r.returncode == _cli.EXIT_NOT_FOUND, (args, r.stderr)
        assert f"no segment named {name!r}".encode() in r.stderr, (args, r.stderr)
        assert b"/mapshare." not in r.stderr, (args, r.stderr)


@pytest.mark.skipif(not LINUX or EXE is None, reason="a pipe closed by `head`")
def test_ls_json_into_a_closed_pipe(names: Any) -> None:
    # enough output that the writer is still writing when `head -c 1` has gone
    made = [mapshare.Segment.create(names(), 64) for _ in range(40)]
    try:
        r = subprocess.run(
            f"{EXE} ls --json | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}",
            shell=True, executable="/bin/bash", capture_output=True, timeout=TIMEOUT,
            check=False,
        )
        assert b"Traceback" not in r.stderr and b"BrokenPipe" not in r.stderr, r.stderr
        assert r.stdout.strip() in (b"0", str(_cli.EXIT_BROKEN_PIPE).encode()), r.stdout
    finally:
        for seg in made:
            seg.close()


def test_receive_binary_as_hex_and_json(name: str) -> None:
    blob = bytes(range(256))
    with mapshare.Channel.create(name, 8192) as ch:
        ch.send(blob)
        ch.send("héllo".encode())
        ch.send(blob)
        r = run("receive", name, "--hex")
        assert r.returncode == 0 and r.stdout == blob.hex().encode() + b"\n"
        r = run("receive", name, "--json", "--count", "2")
        assert r.returncode == 0, r.stderr
        first, second = (json.loads(line) for line in r.stdout.splitlines())
        assert first == {"size": 6, "text": "héllo"}
        import base64

        assert second["size"] == 256 and base64.b64decode(second["base64"]) == blob
        r = run("receive", name, "--hex", "--json")
        assert r.returncode == _cli.EXIT_USAGE  # argparse: not allowed together


def test_send_file_stops_on_a_full_channel_and_says_how_many(name: str, tmp_path: Any) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"".join(b"%04d" % i + b"x" * 100 + b"\n" for i in range(100)))
    with mapshare.Channel.create(name, 1024) as ch:
        r = run("send", name, "--file", str(lines), "--timeout", "0.2")
        assert r.returncode == 1, r.stderr
        per = 8 + 104  # header + payload padded to 8
        fits = 1024 // per
        assert f"{fits} message(s) sent".encode() in r.stderr, r.stderr
        assert f"line {fits + 1}".encode() in r.stderr and repr(name).encode() in r.stderr
        assert ch.statistics().queued_messages == fits


def test_message_too_large_gives_the_sizes(name: str) -> None:
    with mapshare.Channel.create(name, 256) as ch:
        r = run("send", name, "y" * 5000)
        assert r.returncode == 1
        assert b"5000 bytes" in r.stderr and f"max_message {ch.max_message}".encode() in r.stderr
        assert repr(name).encode() in r.stderr


def test_bad_timeout_is_an_error_not_a_traceback(name: str) -> None:
    with mapshare.Channel.create(name, 256) as ch:
        ch.send(b"there")
        r = run("receive", name, "--timeout", "-1")
        assert r.returncode == 1 and b"timeout" in r.stderr
        r = run("receive", name, "--timeout", "soon")
        assert r.returncode == _cli.EXIT_USAGE


@pytest.mark.posix_only("`create` makes persistent objects, which need a backing file on "
                        "Windows (docs/platforms.md)")
def test_create_channel_and_segment(names: Any) -> None:
    c, s = names(), names()
    r = run("create", "channel", c, "--capacity", "64K", "--mode", "660", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "channel" and info["lifetime"] == "persistent"
    assert info["mode"] == "0o660" and info["extra"]["capacity"] == 65536
    r = run("create", "segment", s, "--size", "4096")
    assert r.returncode == 0 and f"created segment {s}".encode() in r.stdout, r.stderr
    try:
        with mapshare.Channel.open(c) as ch:
            ch.send(b"made by the cli")
        assert run("receive", c).stdout == b"made by the cli\n"
        with mapshare.Segment.open(s) as seg:
            assert seg.size == 4096 and seg.lifetime == "persistent"
        r = run("create", "segment", s, "--size", "4096")
        assert r.returncode == _cli.EXIT_EXISTS and repr(s).encode() in r.stderr
        for bad in (["--size", "lots"], ["--size", "-5"], ["--size", "1", "--mode", "9z"],
                    ["--size", "1", "--lifetime", "forever"]):
            r = run("create", "segment", names(), *bad)
            assert r.returncode == _cli.EXIT_USAGE, (bad, r.stderr)
        r = run("create", "segment", names(), "--size", "8", "--mode", "400")
        assert r.returncode == 1 and b"mode" in r.stderr
    finally:
        assert run("rm", c, s).returncode == 0


@pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="needs root to become uid 65534")
def test_ls_and_info_show_another_users_object_as_no_permission(name: str) -> None:
    seg = mapshare.Segment.create(name, 64)  # root's, mode 0600
    r_fd, w_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r_fd)
            os.setgid(65534)
            os.setuid(65534)
            infos = [i for i in mapshare.segments() if i.os_name == _naming.os_name(name)]
            os.write(w_fd, json.dumps([(i.name, i.state, i.uid) for i in infos]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w_fd)
    try:
        data = b""
        while chunk := os.read(r_fd, 65536):
            data += chunk
        os.waitpid(pid, 0)
        assert json.loads(data) == [[name, "no permission", 0]]
    finally:
        os.close(r_fd)
        seg.close()
