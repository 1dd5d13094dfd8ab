"""close() from one thread while another waits in the same handle: refused with
BufferError (it used to unmap under the waiter and crash the process)."""

import subprocess
import sys
import textwrap

import mapshare

SCRIPT = textwrap.dedent(
    """
    import threading, time, mapshare
    from mapshare.testing import unique_name
    kind = {kind!r}
    name = unique_name()
    if kind == "event":
        obj = mapshare.Event.create(name); wait = lambda: obj.wait(1.0)
    elif kind == "channel":
        obj = mapshare.Channel.create(name, 4096)
        def wait():
            try:
                obj.receive(timeout=1.0)
            except mapshare.WaitTimeout:
                pass
    else:
        obj = mapshare.Segment.create(name, 64)
        def wait():
            try:
                obj.wait_for_change(0, timeout=1.0)
            except mapshare.WaitTimeout:
                pass
    t = threading.Thread(target=wait); t.start()
    time.sleep(0.3)
    try:
        obj.close()
        print("closed under a waiter")
    except BufferError as exc:
        print("refused:", exc)
    t.join()
    obj.close()
    print("ok")
    """
)


def _run(kind: str) -> str:
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(kind=kind)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}"
    return r.stdout


def test_event_close_while_waiting_is_refused() -> None:
    out = _run("event")
    assert "refused: cannot close: 1 thread(s) are waiting" in out and out.endswith("ok\n")


def test_segment_close_while_waiting_is_refused() -> None:
    out = _run("segment")
    assert "refused:" in out and out.endswith("ok\n")


def test_channel_close_while_waiting_is_refused() -> None:
    out = _run("channel")
    assert "refused:" in out and out.endswith("ok\n")


def test_error_numbers_are_the_posix_ones(name: str) -> None:
    with mapshare.Segment.create(name, 16):
        try:
            mapshare.Segment.create(name, 16)
        except FileExistsError as exc:
            assert exc.errno == 17
        else:
            raise AssertionError("exclusive create succeeded twice")
