"""Module-level child functions for tests/multiprocess/test_wait_processes.py
(importable under 'spawn').  Children report through a pipe (``conn``) and never raise
into multiprocessing: the parent asserts on what they sent."""

from __future__ import annotations

import signal
import time
from typing import Any, Optional

import mapshare
from mapshare import _core


def _open(kind: str, name: str) -> Any:
    if kind == "subscriber":
        # the topic handle is closed after its subscriber, at the end
        topic = mapshare.Topic.open(name)
        sub = topic.subscribe()
        _topics.append(topic)
        return sub
    if kind == "event":
        return mapshare.Event.open(name)
    if kind == "semaphore":
        return mapshare.Semaphore.open(name)
    if kind == "channel":
        return mapshare.Channel.open(name)
    return mapshare.Segment.open(name)


_topics: list[Any] = []


def wait_on(objects: list[tuple[str, str]], polling: bool, timeout: Optional[float],
            conn: Any) -> None:
    """Open each (kind, name), say "ready", wait on them all in the main thread with
    Ctrl-C enabled, and report the indexes of the ready ones (or what ended the wait)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _core._wait_polling(polling)
    opened: list[Any] = []
    try:
        opened = [_open(kind, name) for kind, name in objects]
        conn.send("ready")
        ready = mapshare.wait(opened, timeout=timeout)
        conn.send(("ok", [opened.index(x) for x in ready]))
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
    finally:
        for x in opened + _topics:
            x.close()
        conn.close()


def send_and_linger(name: str, conn: Any) -> None:
    """Send one message (which registers this process as a sender), say so, then linger
    until the parent kills it."""
    ch = mapshare.Channel.open(name)
    ch.send(b"last words")
    conn.send("sent")
    time.sleep(120)
