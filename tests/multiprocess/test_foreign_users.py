"""Objects created with a group mode are used end to end by a member of that
group running as another uid.

The creator (this test, as root) makes each object with ``mode=0o660`` and gives it the
group ``GROUP``; a forked child drops to uid/gid 65534 with ``GROUP`` as a supplementary
group (the only way it may open the objects) and opens every kind with
``allow_foreign=True``.  Parent and child talk through the objects themselves; a pipe
only carries the child's verdict.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import mapshare
from support import shm_path

pytestmark = [
    pytest.mark.posix_only("uids, groups and mode bits"),
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0,
        reason="needs root (to become another uid) and /dev/shm",
    ),
]

OTHER_UID = 65534
GROUP = 4747  # a group only the child is a member of (besides the creator, root)
JOIN = 60.0


def _give_to_group(name: str) -> None:
    os.chown(shm_path(name), -1, GROUP)


def _as_group_member(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child as uid 65534, member of GROUP; return what it
    returned (JSON), or fail with the child's traceback."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 1
        try:
            os.setgroups([GROUP])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            result = {"ok": body()}
            code = 0
        except BaseException:
            result = {"error": traceback.format_exc()}
        try:
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks) or b'{"error": "no report"}')
    assert "error" not in out, out["error"]
    assert os.waitstatus_to_exitcode(status) == 0
    return out["ok"]


@pytest.fixture
def shared_names(names: Any) -> Iterator[Callable[[], str]]:
    yield names


def test_group_member_uses_a_channel_both_ways(shared_names: Any) -> None:
    to_child, to_parent = shared_names(), shared_names()
    down = mapshare.Channel.create(to_child, 4096, mode=0o660)
    up = mapshare.Channel.create(to_parent, 4096, mode=0o660)
    for n in (to_child, to_parent):
        _give_to_group(n)
    down.send(b"ping")

    def child() -> Any:
        with mapshare.Channel.open(to_child, allow_foreign=True) as d, mapshare.Channel.open(
            to_parent, allow_foreign=True
        ) as u:
            got = d.receive(timeout=10)
            u.send(got + b"-pong")
            u.send_object({"uid": os.getuid()})
            return got.decode()

    try:
        assert _as_group_member(child) == "ping"
        assert up.receive(timeout=10) == b"ping-pong"
        assert up.receive_object(timeout=10) == {"uid": OTHER_UID}
    finally:
        down.close()
        up.close()


def test_group_member_without_allow_foreign_is_refused(shared_names: Any) -> None:
    n = shared_names()
    ch = mapshare.Channel.create(n, 4096, mode=0o660)
    _give_to_group(n)

    def child() -> Any:
        try:
            mapshare.Channel.open(n)
        except mapshare.PermissionDeniedError as exc:
            return str(exc)
        return "opened"

    try:
        msg = _as_group_member(child)
        assert "allow_foreign=True" in msg and n in msg
    finally:
        ch.close()


def test_group_member_contends_for_a_lock(shared_names: Any) -> None:
    n, flag = shared_names(), shared_names()
    lock = mapshare.Lock.create(n, mode=0o660)
    ev = mapshare.Event.create(flag, mode=0o660)
    for x in (n, flag):
        _give_to_group(x)
    assert lock.acquire(timeout=0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 1
        try:
            os.setgroups([GROUP])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            mine = mapshare.Lock.open(n, allow_foreign=True)
            started = mapshare.Event.open(flag, allow_foreign=True)
            busy = not mine.acquire(timeout=0)  # the parent holds it
            started.set()
            got = mine.acquire(timeout=20)  # sleeps until the parent releases
            mine.release()
            mine.close()
            started.close()
            os.write(w, json.dumps([busy, got]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        assert ev.wait(timeout=20), "the child never tried the lock"
        time.sleep(0.2)  # let it go to sleep in acquire (not needed for correctness)
        lock.release()
        report = os.read(r, 1024)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert json.loads(report) == [True, True]
        assert lock.acquire(timeout=5)  # released by the child: free again
        lock.release()
    finally:
        os.close(r)
        lock.close()
        ev.close()


def test_group_member_uses_event_and_semaphore(shared_names: Any) -> None:
    en, sn = shared_names(), shared_names()
    ev = mapshare.Event.create(en, mode=0o660)
    sem = mapshare.Semaphore.create(sn, 1, maximum=2, mode=0o660)
    for x in (en, sn):
        _give_to_group(x)

    def child() -> Any:
        e = mapshare.Event.open(en, allow_foreign=True)
        s = mapshare.Semaphore.open(sn, allow_foreign=True)
        try:
            took = s.acquire(timeout=5)
            empty = not s.acquire(timeout=0)
            s.release(2)  # one back, one more: the parent sees 2
            e.set()
            return [took, empty]
        finally:
            e.close()
            s.close()

    try:
        assert _as_group_member(child) == [True, True]
        assert ev.is_set()
        assert sem.value == 2
    finally:
        ev.close()
        sem.close()


def test_group_member_reads_and_writes_a_segment(shared_names: Any) -> None:
    n = shared_names()
    seg = mapshare.Segment.create(n, 4096, mode=0o660)
    _give_to_group(n)
    seg.write(b"from root", 0)

    def child() -> Any:
        with mapshare.Segment.open(n, allow_foreign=True) as s:
            before = s.read(9, 0).decode()
            s.write(b"from nobody", 100)
            s.notify()
            with s.lock():
                s.write(b"!", 200)
            return before

    try:
        assert _as_group_member(child) == "from root"
        assert seg.read(11, 100) == b"from nobody"
        assert seg.read(1, 200) == b"!"
        assert seg.change_count == 1
    finally:
        seg.close()


def test_group_member_open_or_create_takes_the_same_option(shared_names: Any) -> None:
    n, c = shared_names(), shared_names()
    lock = mapshare.Lock.create(n, mode=0o660)
    ch = mapshare.Channel.create(c, 4096, mode=0o660)
    for x in (n, c):
        _give_to_group(x)

    def child() -> Any:
        lk = mapshare.Lock.open_or_create(n, allow_foreign=True)
        held = lk.acquire(timeout=5)
        lk.release()
        lk.close()
        with mapshare.Channel.open_or_create(c, 4096, allow_foreign=True) as ch2:
            ch2.send(b"hello")
        return held

    try:
        assert _as_group_member(child) is True
        assert ch.receive(timeout=5) == b"hello"
    finally:
        lock.close()
        ch.close()


def test_cli_allow_foreign_as_group_member(shared_names: Any) -> None:
    """The CLI's --allow-foreign, run (in-process, in the forked child: the test's Python
    lives under /root, which uid 65534 cannot execute) as the group member."""
    n = shared_names()
    ch = mapshare.Channel.create(n, 4096, mode=0o660)
    _give_to_group(n)
    ch.send(b"for the cli")

    def child() -> Any:
        from mapshare._cli import main

        refused = main(["receive", n, "--timeout", "1"])
        sent = main(["send", n, "reply", "--allow-foreign"])
        devnull = os.open(os.devnull, os.O_WRONLY)
        saved = os.dup(1)
        os.dup2(devnull, 1)
        try:
            received = main(["receive", n, "--timeout", "5", "--allow-foreign"])
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
        return [refused, sent, received]

    try:
        assert _as_group_member(child) == [4, 0, 0]  # 4: no permission
        assert ch.receive(timeout=5) == b"reply"
    finally:
        ch.close()
