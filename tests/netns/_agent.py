"""A process on one of the test hosts, driven over stdin/stdout by the test (one JSON
object a line each way), so that one process per host can hold topics and channels,
publish, and run receiving threads while the test cuts links and kills bridges.

Run as a script: ``python tests/netns/_agent.py``.  Messages carry a counter in their
first 8 bytes (little-endian), so a receiver can check order, duplicates and the exact
size of every gap.  Every command is answered with ``{"ok": ...}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
import traceback
from typing import Any, Callable

import mapshare

COUNTER = struct.Struct("<Q")


def payload(counter: int, size: int) -> bytes:
    """A message of ``size`` bytes (at least 8) starting with ``counter``."""
    return COUNTER.pack(counter) + bytes(max(0, size - COUNTER.size))


class Receiver(threading.Thread):
    """Receives from a subscriber (or a channel) until stopped and keeps a log:
    ``["m", counter, origin_host, origin_seq]`` per message (origin fields None for a
    message published on this host) and ``["lag", missed]`` per Lagged."""

    def __init__(self, receive: Callable[[float], bytes], origin: Callable[[], Any],
                 delay: float) -> None:
        super().__init__(daemon=True)
        self.receive, self.origin, self.delay = receive, origin, delay
        self.log: list[list[Any]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            self._loop()
        except BaseException:  # reported to the test (check_gaps fails on it)
            with self.lock:
                self.log.append(["error", traceback.format_exc()])

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.receive(0.1)
            except TimeoutError:
                continue
            except mapshare.Lagged as exc:
                with self.lock:
                    self.log.append(["lag", exc.missed])
                continue
            (counter,) = COUNTER.unpack_from(data)
            o = self.origin()
            with self.lock:
                self.log.append(["m", counter, None if o is None else o.host,
                                 None if o is None else o.seq])
            if self.delay:
                time.sleep(self.delay)

    def report(self) -> list[list[Any]]:
        with self.lock:
            return list(self.log)


class Agent:
    def __init__(self) -> None:
        self.topics: dict[str, mapshare.Topic] = {}
        self.channels: dict[str, mapshare.Channel] = {}
        self.receivers: dict[str, Receiver] = {}
        self.subs: list[Any] = []

    def op_topic(self, name: str, capacity: int = 1 << 20, overflow: Any = "overwrite") -> Any:
        self.topics[name] = mapshare.Topic.open_or_create(name, capacity, overflow=overflow)
        return True

    def op_channel(self, name: str, capacity: int = 1 << 20) -> Any:
        self.channels[name] = mapshare.Channel.open_or_create(name, capacity)
        return True

    def op_subscribe(self, id: str, topic: str, delay: float = 0.0) -> Any:
        sub = self.topics[topic].subscribe()
        self.subs.append(sub)
        r = Receiver(sub.receive, lambda: sub.last_origin, delay)
        self.receivers[id] = r
        r.start()
        return True

    def op_receiver(self, id: str, channel: str, delay: float = 0.0) -> Any:
        r = Receiver(self.channels[channel].receive, lambda: None, delay)
        self.receivers[id] = r
        r.start()
        return True

    def op_stop(self, id: str) -> Any:
        r = self.receivers[id]
        r.stop.set()
        r.join(10)
        return r.report()

    def op_report(self, id: str) -> Any:
        return self.receivers[id].report()

    def op_publish(self, topic: str, first: int, count: int, size: int = 64,
                   pace: float = 0.0, batch: int = 1) -> Any:
        """Publish counters first..first+count-1 with ``publish_nowait`` (sleeping
        ``pace`` seconds after every ``batch`` messages); return the first and last
        sequence numbers and how many publishes raised (TopicFull or else)."""
        t = self.topics[topic]
        seqs: list[int] = []
        raised: dict[str, int] = {}
        for i in range(first, first + count):
            try:
                seqs.append(t.publish_nowait(payload(i, size)))
            except Exception as exc:  # counted and reported: the test asserts there are none
                raised[type(exc).__name__] = raised.get(type(exc).__name__, 0) + 1
            if pace and (i - first + 1) % batch == 0:
                time.sleep(pace)
        return {"first_seq": seqs[0] if seqs else None, "last_seq": seqs[-1] if seqs else None,
                "raised": raised}

    def op_send(self, channel: str, first: int, count: int, size: int = 64,
                pace: float = 0.0) -> Any:
        c = self.channels[channel]
        for i in range(first, first + count):
            c.send(payload(i, size), timeout=30)
            if pace:
                time.sleep(pace)
        return True

    def op_shm(self) -> Any:
        return sorted(os.listdir("/dev/shm"))

    def op_statistics(self, topic: str) -> Any:
        return str(self.topics[topic].statistics())

    def close(self) -> None:
        for r in self.receivers.values():
            r.stop.set()
        for r in self.receivers.values():
            r.join(10)
        for s in self.subs:
            s.close()
        for t in self.topics.values():
            t.close()
        for c in self.channels.values():
            c.close()


def main() -> None:
    agent = Agent()
    out = sys.stdout
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd.pop("op")
            if op == "exit":
                break
            try:
                reply = {"ok": getattr(agent, "op_" + op)(**cmd)}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    finally:
        agent.close()
    out.write(json.dumps({"ok": "bye"}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
