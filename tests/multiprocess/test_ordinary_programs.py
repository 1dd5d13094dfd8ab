"""Ordinary programs, run as real scripts: a normal exit (end of script, sys.exit, an
uncaught exception, a handle deleted or collected, a multiprocessing child returning)
detaches everything and leaves nothing in /dev/shm -- even with a lock held or a view,
array, loan or received view alive -- and the next run's ``create`` succeeds.  A service
killed with SIGKILL does not block its restart: ``create`` reclaims the name.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

import mapshare
from mapshare import _naming
from mapshare.testing import shm_entries
from support import mp_context

pytestmark = pytest.mark.posix_only("SIGKILL, /dev/shm")

PRELUDE = "import mapshare, sys, gc, time, threading\nNAME = sys.argv[1]\n"


def script(program: str, name: str, *, code: int = 0, cwd: str | None = None,
           expect_stderr: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(program), name],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    if expect_stderr is None:
        assert proc.stderr == "", proc.stderr
    else:
        assert expect_stderr in proc.stderr, proc.stderr
        assert proc.stderr.count("Traceback") == 1, proc.stderr
    assert "Segmentation" not in proc.stderr
    return proc


def gone(name: str) -> bool:
    return _naming.os_name(name) not in shm_entries()


# What each kind's program makes, and how the next run makes it again.
MAKE = {
    "segment": "mapshare.Segment.create(NAME, 4096)",
    "lock": "mapshare.Lock.create(NAME)",
    "event": "mapshare.Event.create(NAME)",
    "semaphore": "mapshare.Semaphore.create(NAME, 2)",
    "channel": "mapshare.Channel.create(NAME, 4096)",
    "topic": "mapshare.Topic.create(NAME, 4096)",
    "latest": "mapshare.Latest.create(NAME, 64)",
    "array": "mapshare.SharedArray.create(NAME, (4, 4), 'f8')",
}

ENDINGS = {
    "end": ("", 0, None),
    "sys.exit": ("sys.exit(3)", 3, None),
    "exception": ("raise KeyError('boom')", 1, "KeyError: 'boom'"),
}


def recreate(kind: str, name: str) -> None:
    obj = eval(MAKE[kind], {"mapshare": mapshare, "NAME": name})
    obj.close()
    assert gone(name)


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("kind", list(MAKE))
def test_script_that_ends_leaves_nothing(kind: str, ending: str, name: str) -> None:
    tail, code, err = ENDINGS[ending]
    script(f"obj = {MAKE[kind]}\n{tail}\n", name, code=code, expect_stderr=err)
    assert gone(name)
    recreate(kind, name)


@pytest.mark.parametrize("how", ["del", "scope", "gc-cycle"])
def test_handle_deleted_or_collected(how: str, name: str) -> None:
    program = {
        "del": "seg = mapshare.Segment.create(NAME, 64)\ndel seg\n",
        "scope": "def f():\n    s = mapshare.Segment.create(NAME, 64)\nf()\n",
        "gc-cycle": (
            "class Holder: pass\nh = Holder(); h.me = h\n"
            "h.seg = mapshare.Segment.create(NAME, 64)\ndel h\ngc.collect()\n"
        ),
    }[how]
    script(program + "import os\nassert not os.path.exists('/dev/shm/mapshare.' + NAME)\n",
           name)
    assert gone(name)


@pytest.mark.parametrize("how", ["named lock", "segment lock", "sys.exit inside",
                                 "exception inside"])
def test_script_holding_a_lock_at_exit(how: str, name: str) -> None:
    program, code, err = {
        "named lock": ("lock = mapshare.Lock.create(NAME)\nlock.acquire()\n", 0, None),
        "segment lock": ("seg = mapshare.Segment.create(NAME, 64)\nseg.lock().acquire()\n",
                         0, None),
        "sys.exit inside": ("lock = mapshare.Lock.create(NAME)\nlock.acquire()\nsys.exit(4)\n",
                            4, None),
        "exception inside": (
            "lock = mapshare.Lock.create(NAME)\nlock.acquire()\nraise ValueError('x')\n",
            1, "ValueError: x"),
    }[how]
    script(program, name, code=code, expect_stderr=err)
    assert gone(name)
    recreate("lock", name)


def test_lock_held_at_exit_is_released_not_owner_died(name: str) -> None:
    # Another process keeps the lock's name alive; the script's normal exit must hand the
    # lock over cleanly: the next acquirer is not told that its owner died.
    lock = mapshare.Lock.create(name)  # (`with lock:` would acquire it)
    try:
        script("lock = mapshare.Lock.open(NAME)\nlock.acquire()\n", name)
        assert lock.acquire(timeout=10)
        lock.release()
        with mapshare.Segment.create(name + "s", 64) as seg:
            script("seg = mapshare.Segment.open(NAME + 's')\nseg.lock().acquire()\n", name)
            assert seg.lock().acquire(timeout=10)
            seg.lock().release()
    finally:
        lock.close()
    assert gone(name) and gone(name + "s")


def test_lock_held_by_a_daemon_thread_at_exit_is_owner_died(name: str) -> None:
    # That thread never finished its critical section: the next acquirer is told (the
    # documented choice), and the handle still detaches.
    lock = mapshare.Lock.create(name)
    try:
        script("""
            lock = mapshare.Lock.open(NAME)
            held = threading.Event()
            def hold():
                lock.acquire()
                held.set()
                time.sleep(60)
            threading.Thread(target=hold, daemon=True).start()
            held.wait()
        """, name)
        with pytest.raises(mapshare.OwnerDiedError, match="now held by you"):
            lock.acquire(timeout=10)
        lock.release()
        assert [p for p in lock._segment.info().attached if p.pid != os.getpid()] == []
    finally:
        lock.close()
    assert gone(name)


@pytest.mark.parametrize("alive", ["buf", "array", "view", "loan", "receive_view",
                                   "receive_array_view", "shared array", "latest view",
                                   "topic view"])
def test_script_with_live_memory_at_exit(alive: str, name: str) -> None:
    pytest.importorskip("numpy")
    program = {
        "buf": "seg = mapshare.Segment.create(NAME, 4096)\nm = seg.buf[10:]\n",
        "array": ("import numpy as np\nseg = mapshare.Segment.create(NAME, 4096)\n"
                  "a = np.ndarray((512,), np.int64, buffer=seg.buf)\n"),
        "view": "seg = mapshare.Segment.create(NAME, 3 * 4096)\nv = seg.view(4097, 100)\n",
        "loan": ("ch = mapshare.Channel.create(NAME, 4096)\nw = ch.loan(64)\n"
                 "m = w.__enter__()\n"),
        "receive_view": ("ch = mapshare.Channel.create(NAME, 4096)\nch.send(b'x' * 10)\n"
                         "w = ch.receive_view()\nm = w.__enter__()\n"),
        "receive_array_view": (
            "import numpy as np\nch = mapshare.Channel.create(NAME, 4096)\n"
            "ch.send_array(np.ones(4))\ncm = ch.receive_array_view()\na = cm.__enter__()\n"),
        "shared array": ("arr = mapshare.SharedArray.create(NAME, (64,), 'i8')\n"
                         "a = arr.array[8:]\na[:] = 7\n"),
        "latest view": ("lv = mapshare.Latest.create(NAME, 64)\nlv.set(b'x' * 10)\n"
                        "cm = lv.view()\nm = cm.__enter__()\n"),
        "topic view": ("t = mapshare.Topic.create(NAME, 4096)\nsub = t.subscribe()\n"
                       "t.publish(b'x' * 10)\ncm = sub.receive_view()\nm = cm.__enter__()\n"),
    }[alive]
    script(program, name)
    assert gone(name)
    kind = {"shared array": "array", "latest view": "latest", "topic view": "topic"}.get(
        alive, "segment" if alive in ("buf", "array", "view") else "channel")
    recreate(kind, name)


# A peer's script that just ends (normally, by sys.exit or by an exception) is a clean
# detach, never a dead peer: what the survivor sees for each kind whose peers are counted.
PEER = {
    "latest": (
        "lv = mapshare.Latest.open(NAME)\nlv.set(b'from the script')\n",
        "lv.view().__enter__()\n",  # a view still held at exit
    ),
    "array": (
        "arr = mapshare.SharedArray.open(NAME, access='rw')\narr.array[:] = 5\n"
        "arr.publish()\n",
        "arr.lock().acquire()\n",  # its lock still held at exit
    ),
    "topic": (
        "t = mapshare.Topic.open(NAME)\nt.publish(b'from the script')\n",
        "sub = t.subscribe()\n",  # a subscriber still open at exit
    ),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("kind", list(PEER))
def test_a_peer_script_that_ends_is_not_a_dead_peer(kind: str, ending: str,
                                                    name: str) -> None:
    pytest.importorskip("numpy")
    body, held = PEER[kind]
    tail, code, err = ENDINGS[ending]
    if kind == "latest":
        with mapshare.Latest.create(name, 64) as lv:
            script(body + held + tail, name, code=code, expect_stderr=err)
            assert lv.get()[0] == b"from the script"
            assert lv.statistics().writer_deaths == 0
            assert lv.set(b"mine") > 0  # the slot is free, nobody holds it
            with lv.view() as m:
                assert bytes(m) == b"mine"
    elif kind == "array":
        with mapshare.SharedArray.create(name, (16,), "i4") as arr:
            script(body + held + tail, name, code=code, expect_stderr=err)
            assert arr.version == 1
            assert (arr.array == 5).all()
            lock = arr.lock()
            assert lock.acquire(timeout=5)  # released at exit, not OwnerDiedError
            lock.release()
    else:
        with mapshare.Topic.create(name, 4096) as t:
            sub = t.subscribe()
            script(body + held + tail, name, code=code, expect_stderr=err)
            assert sub.receive(timeout=5) == b"from the script"
            st = t.statistics()
            # the script's subscriber left the table: a clean exit, not a death
            assert [r.pid for r in st.subscribers] == [os.getpid()], st
            assert st.subscriber_deaths == 0 and st.publisher_deaths == 0, st
            t.publish(b"after")
            assert sub.receive(timeout=5) == b"after"
            sub.close()
    assert gone(name)


_held: list[object] = []


def _child_creates(name: str) -> None:
    _held.append(mapshare.Segment.create(name, 64))  # no close: the child just returns
    _held.append(mapshare.Channel.create(name + "c", 4096))


def _child_opens(name: str) -> None:
    seg = mapshare.Segment.open(name)
    seg.buf[0] = 1
    _held.append(seg)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_child_returning(method: str, name: str) -> None:
    ctx = mp_context(method)
    p = ctx.Process(target=_child_creates, args=(name,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert gone(name) and gone(name + "c")
    with mapshare.Segment.create(name, 64) as seg:
        p = ctx.Process(target=_child_opens, args=(name,))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert seg.buf[0] == 1
        assert [x.pid for x in seg.info().attached] == [os.getpid()]
    assert gone(name)


# ---- restart after SIGKILL -----------------------------------------------------------

def _start_service(make: str, name: str, cwd: str | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c",
         PRELUDE + f"obj = {make}\nif isinstance(obj, mapshare.Segment): obj.buf[0] = 7\n"
         "print('ready', flush=True)\ntime.sleep(120)\n", name],
        stdout=subprocess.PIPE, text=True, cwd=cwd,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    if proc.stdout:
        proc.stdout.close()


@pytest.mark.parametrize("kind", list(MAKE))
def test_create_after_sigkill_of_the_service(kind: str, name: str) -> None:
    _kill(_start_service(MAKE[kind], name))
    assert not gone(name)  # the killed service left it behind
    recreate(kind, name)


def test_create_after_sigkill_with_a_held_lock(name: str) -> None:
    proc = _start_service("mapshare.Lock.create(NAME); obj.acquire()", name)
    _kill(proc)
    lock = mapshare.Lock.create(name)
    assert lock.acquire(timeout=5)  # a fresh lock: nobody died holding it
    lock.release()
    lock.close()
    assert gone(name)


def test_create_never_takes_a_name_a_live_process_uses(name: str) -> None:
    proc = _start_service(MAKE["segment"], name)
    try:
        with pytest.raises(mapshare.SegmentExistsError, match=re.escape(name)):
            mapshare.Segment.create(name, 4096)
    finally:
        _kill(proc)
    recreate("segment", name)


def test_persistent_object_of_a_killed_service_is_kept(name: str) -> None:
    _kill(_start_service("mapshare.Segment.create(NAME, 64, lifetime='persistent')", name))
    try:
        with pytest.raises(mapshare.SegmentExistsError, match=re.escape(name)):
            mapshare.Segment.create(name, 64)
        mapshare.Segment.open(name).close()  # its data is still there
    finally:
        mapshare.Segment.open(name).unlink()
    assert gone(name)


def _race_create(name: str, q: Any, done: Any) -> None:
    try:
        seg = mapshare.Segment.create(name, 4096)
    except mapshare.SegmentExistsError:
        q.put("exists")
        done.wait()
        return
    q.put("created")
    done.wait()  # everyone has tried while the winner still holds it
    seg.close()


def _race_open_or_create(name: str, q: Any, done: Any) -> None:
    seg = mapshare.Segment.open_or_create(name, 4096)
    fd = os.open('/dev/shm' + seg.os_name, os.O_RDONLY)
    q.put(f"{os.fstat(fd).st_ino} {seg.buf[0]}")
    os.close(fd)
    done.wait()
    seg.close()


@pytest.mark.parametrize("target", [_race_create, _race_open_or_create])
def test_racing_creators_after_sigkill(target: Callable[..., None], name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    n = 6
    for _ in range(3):
        _kill(_start_service(MAKE["segment"], name))
        q = ctx.Queue()
        done = ctx.Barrier(n)
        procs = [ctx.Process(target=target, args=(name, q, done)) for _ in range(n)]
        for p in procs:
            p.start()
        results = sorted(q.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        if target is _race_create:
            assert results.count("created") == 1, results
        else:
            assert len(set(results)) == 1, results  # everyone opened the same object,
            assert results[0].endswith(" 0"), results  # a new one, not the dead service's
        assert gone(name)


# ---- file-backed segments ------------------------------------------------------------

def test_relative_path_opened_by_name_from_another_directory(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with mapshare.Segment.create(name, 100, path=os.path.relpath(tmp_path / "a" / "d.bin")):
        pass  # the creator's cwd is the test's; only the link's path matters
    assert gone(name)
    proc = _start_service("mapshare.Segment.open_or_create(NAME, 100, path='d.bin')", name,
                          cwd=str(tmp_path / "a"))
    try:
        out = script("s = mapshare.Segment.open(NAME)\nprint(s.path)\ns.close()\n", name,
                     cwd=str(tmp_path / "b"))
        assert out.stdout.strip() == str(tmp_path / "a" / "d.bin")
    finally:
        _kill(proc)
    with mapshare.Segment.open_or_create(name, 100, path=str(tmp_path / "a" / "d.bin")):
        pass  # the killed service's name still works, and goes with its last user
    assert gone(name)


def test_file_backed_open_or_create_after_every_process_exited(
    tmp_path: Path, name: str
) -> None:
    path = str(tmp_path / "data.bin")
    for i in range(3):
        script(f"""
            s = mapshare.Segment.open_or_create(NAME, 64, path={path!r})
            assert s.buf[0] == {i}, s.buf[0]
            s.buf[0] += 1
        """, name)
        assert gone(name)


def test_open_by_path_registers_the_name(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / "data.bin")
    mapshare.Segment.create(name, 64, path=path).close()
    assert gone(name)
    with mapshare.Segment.open(path=path) as seg:
        assert not gone(name)
        assert any(i.name == name for i in mapshare.segments())
        script("s = mapshare.Segment.open(NAME)\ns.buf[1] = 9\n", name)
        assert seg.buf[1] == 9
    assert gone(name)


def test_file_backed_create_after_sigkill(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / "data.bin")
    _kill(_start_service(f"mapshare.Segment.create(NAME, 64, path={path!r})", name))
    assert not gone(name)  # its link
    with pytest.raises(mapshare.SegmentExistsError, match=re.escape(path)):
        mapshare.Segment.create(name, 64, path=path)  # the file is data: never replaced
    with mapshare.Segment.create(name, 64, path=str(tmp_path / "other.bin")):
        pass
    with mapshare.Segment.open_or_create(name, 64, path=path):
        pass
    assert gone(name)


def test_daemon_thread_waiting_inside_at_exit(name: str) -> None:
    # A daemon thread still blocked in receive() when the script ends: the handle is
    # detached (the name goes), and its mapping is left to the ending process.
    script("""
        ch = mapshare.Channel.create(NAME, 4096)
        started = threading.Event()
        def wait():
            started.set()
            ch.receive()
        threading.Thread(target=wait, daemon=True).start()
        started.wait()
        time.sleep(0.2)
    """, name)
    assert gone(name)
    recreate("channel", name)
