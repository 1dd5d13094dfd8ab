"""Module-level child functions for tests/multiprocess/test_topic_exit.py (importable
under 'spawn'): subscribers and publishers that end normally, in real child processes
against a real topic in /dev/shm."""

from __future__ import annotations

from typing import Any

import mapshare


def subscribe_and_return(name: str, n: int) -> None:
    """A multiprocessing child that subscribes, receives ``n`` messages and returns,
    closing nothing explicitly."""
    topic = mapshare.Topic.open(name)
    sub = topic.subscribe(start=0)
    for _ in range(n):
        sub.receive(timeout=60)


def receive_inherited_and_return(sub: Any, n: int, out: Any) -> None:
    """A forked child that receives ``n`` messages on the subscriber it inherited, reports
    them and the table rows it sees, then returns."""
    got = [sub.receive(timeout=60) for _ in range(n)]
    rows = sub.topic.statistics().subscribers
    out.put((got, sub.position, sorted((r.pid, r.position) for r in rows)))
