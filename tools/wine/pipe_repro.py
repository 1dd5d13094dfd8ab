"""Why concurrent.futures.ProcessPoolExecutor hangs under a Wine prefix that reports
Windows 7 -- a reproduction with the standard library alone (no mapshare).

Run it with the Windows Python (tools/wine/README.md):

    source tools/wine/env.sh && mapshare_wine_server_start
    wine "$PYW/python.exe" tools/wine/pipe_repro.py 2>&1 | cat
    mapshare_wine_server_stop

The executor's manager thread is woken through a multiprocessing Pipe by a zero-length
message (``_ThreadWakeup.wakeup`` sends ``b""``) and drains it with ``while
reader.poll(): reader.recv_bytes()``.  On Windows ``poll()`` issues a zero-length
overlapped ``ReadFile``; when that completes at once, ``multiprocessing.connection.wait``
decides from ``sys.getwindowsversion() >= (6, 2)`` whether the read consumed the empty
message (Windows 8 and later) and, if so, remembers it in ``_got_empty_message``.  Wine's
named pipes consume it (step B), whatever version the prefix reports.  With Wine 8's
default version, Windows 7 (6.1), ``poll()`` answers True, nothing is remembered, and
``recv_bytes()`` waits for a message that is gone: the manager thread never gets back to
the result queue, and every ``future.result(timeout)`` times out (step C).
tools/wine/setup.sh therefore sets the prefix to Windows 10; under it every step passes.

Exit status 0 when the pipe and the pool behave (win10 prefix), 1 otherwise.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing as mp
import os
import sys
import threading
from typing import Any, Callable


def _double(x: int) -> int:
    return 2 * x


def _within(seconds: float, fn: Callable[[], Any]) -> tuple[bool, Any]:
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.setdefault("v", fn()), daemon=True)
    t.start()
    t.join(seconds)
    return "v" in out, out.get("v")


def main() -> int:
    import _winapi  # type: ignore[import-not-found]  # Windows only

    ok = True
    print("Windows version reported:", sys.getwindowsversion()[:3])

    print("A. send_bytes(b''), then what _ThreadWakeup.clear() does: poll(), recv_bytes()")
    r, w = mp.Pipe(duplex=False)
    w.send_bytes(b"")
    done, ready = _within(3, r.poll)
    print(f"   poll() -> {ready}, _got_empty_message = {r._got_empty_message}")
    done, got = _within(3, r.recv_bytes)
    print(f"   recv_bytes() -> {got!r}" if done else "   recv_bytes() BLOCKED (> 3 s)")
    ok &= done

    print("B. does a zero-length overlapped ReadFile consume an empty message?")
    r, w = mp.Pipe(duplex=False)
    w.send_bytes(b"")
    ov, err = _winapi.ReadFile(r.fileno(), 0, True)
    print(f"   first ReadFile(0): error {err} (0: completed at once)")
    if err:
        ov.cancel()
    ov.GetOverlappedResult(True)
    ov2, err2 = _winapi.ReadFile(r.fileno(), 0, True)
    print(f"   second ReadFile(0): error {err2} -> the message was "
          + ("consumed (Windows 8+ behaviour)" if err2 == _winapi.ERROR_IO_PENDING
             else "not consumed (Windows 7 behaviour)"))
    if err2:
        ov2.cancel()
        ov2.GetOverlappedResult(True)

    print("C. ProcessPoolExecutor(1, spawn): four results within 20 s")
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
    futures = [pool.submit(_double, i) for i in range(4)]
    try:
        print("   results:", [f.result(20) for f in futures])
    except concurrent.futures.TimeoutError:
        print("   TimeoutError; the manager thread is here:", flush=True)
        import faulthandler

        faulthandler.dump_traceback(all_threads=True)
        # shutdown() would join the stuck manager thread for ever
        sys.stdout.flush()
        os._exit(1)
    pool.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
