"""Factories across processes: ``open(..., wait=None)`` waits for a name that another
process creates later."""

from __future__ import annotations

import subprocess
import sys

import mapshare


def test_open_wait_none_waits_for_a_process_that_creates_later(name: str) -> None:
    child = subprocess.Popen([
        sys.executable, "-c",
        "import sys, time, mapshare\n"
        "time.sleep(0.5)\n"
        "ch = mapshare.Channel.create(sys.argv[1], 4096)\n"
        "ch.send(b'hi')\n"
        "ch.receive(timeout=30) if False else time.sleep(2)\n"
        "ch.close()\n",
        name,
    ])
    try:
        with mapshare.Channel.open(name, wait=None) as ch:
            assert ch.receive(timeout=30) == b"hi"
    finally:
        child.wait(60)
