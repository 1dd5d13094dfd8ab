"""Publish a robot's pose as it changes (every millisecond), never waiting for anyone;
stop when the reader says it has seen enough (a named Event)."""

import math
import sys
import time

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-latest"
done = mapshare.Event.create(name + "-done")            # made first: the reader opens it
try:
    with mapshare.Latest.create(name, max_size=256) as pose:
        deadline = time.monotonic() + 30
        version = 0
        while not done.is_set():
            t = version + 1                               # set() returns version + 1
            version = pose.set_object({"t": t, "x": math.cos(t / 100),
                                       "y": math.sin(t / 100)})
            if time.monotonic() > deadline:
                sys.exit("writer: the reader never finished")
            time.sleep(0.001)
finally:
    done.close()
    done.unlink()
print(f"writer: published {version} poses")
