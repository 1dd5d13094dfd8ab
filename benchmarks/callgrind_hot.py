"""Instruction counts of the hot paths under ``valgrind --tool=callgrind``.

    python benchmarks/callgrind_hot.py            # every loop, ~1 minute
    python benchmarks/callgrind_hot.py lock       # one loop

Each loop runs twice under callgrind, with N and N + 10,000 iterations (fewer for the
costly loops, FEWER); the difference divided by that is the instruction count of one
iteration (the interpreter's start-up and the object's creation cancel out).
Instruction counts do not depend on the noisy VM, so a change to a hot path can be
compared before/after to within a few instructions.
To measure another build, put its package first: ``PYTHONPATH=/other/src python ...``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

LOOPS = {
    "lock": "o = mapshare.Lock.create(name)\nfor _ in r:\n    o.acquire(); o.release()",
    "event": "o = mapshare.Event.create(name)\nfor _ in r:\n    o.set(); o.wait(); o.clear()",
    "semaphore": "o = mapshare.Semaphore.create(name)\nfor _ in r:\n    o.acquire(); o.release()",
    "channel": "o = mapshare.Channel.create(name, capacity=65536)\nm = bytes(64)\n"
               "for _ in r:\n    o.send(m); o.receive()",
    # one publish + one receive by one subscriber (overwrite mode, never laps: 64 KiB ring)
    "topic": "o = mapshare.Topic.create(name, capacity=65536)\ns = o.subscribe()\n"
             "m = bytes(64)\nfor _ in r:\n    o.publish(m); s.receive()\ns.close()",
    # publish alone with 1 and with 16 subscribers attached (none reading): in overwrite
    # mode the difference must be 0 (the publisher never reads the subscriber table)
    "topic_pub1": "o = mapshare.Topic.create(name, capacity=65536)\nss = [o.subscribe()]\n"
                  "m = bytes(64)\nfor _ in r:\n    o.publish(m)\nfor s in ss: s.close()",
    "topic_pub16": "o = mapshare.Topic.create(name, capacity=65536)\n"
                   "ss = [o.subscribe() for _ in range(16)]\n"
                   "m = bytes(64)\nfor _ in r:\n    o.publish(m)\nfor s in ss: s.close()",
    # issue 12: an 8-byte get (the target against iceoryx2's blackboard must not regress)
    "latest_get": "o = mapshare.Latest.create(name, 64)\no.set(bytes(8))\n"
                  "for _ in r:\n    o.get()",
    # one 1 MiB get_array: one copy out of the slot (~1,000,000 of it is memcpy)
    "latest_get_array": "import numpy as np\no = mapshare.Latest.create(name, 1 << 20)\n"
                        "o.set_array(np.zeros(131072 - 8))\nfor _ in r:\n    o.get_array()",
    # open a 64 MiB array by name, take .array, close (the layer below: segment_open)
    "array_open": "o = mapshare.SharedArray.create(name, 8 << 20)\n"
                  "for _ in r:\n    a = mapshare.SharedArray.open(name); a.array; a.close()",
    "segment_open": "o = mapshare.Segment.create(name, 64 << 20)\n"
                    "for _ in r:\n    s = mapshare.Segment.open(name); s.close()",
}
BASE, EXTRA = 1000, 10000
# loops whose iteration costs ~100,000 instructions or more: (N, extra) smaller
FEWER = {"latest_get_array": (50, 300), "array_open": (100, 1000),
         "segment_open": (100, 1000)}


def instructions(loop: str, n: int) -> int:
    # no cyclic GC during the loop: its traversals depend on the whole heap, not the loop
    code = (f"import gc, mapshare, os\nname = 'cg-' + str(os.getpid())\nr = range({n})\n"
            f"gc.disable()\n{LOOPS[loop]}\no.close()\no.unlink()\n")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts every run
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, "-c", code], check=True, capture_output=True, env=env)
        with open(out) as f:
            return int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1))  # type: ignore[union-attr]


def main() -> None:
    for loop in sys.argv[1:] or LOOPS:
        base, extra = FEWER.get(loop, (BASE, EXTRA))
        per = (instructions(loop, base + extra) - instructions(loop, base)) / extra
        print(f"{loop:10s} {per:10.0f} instructions per iteration")


if __name__ == "__main__":
    main()
