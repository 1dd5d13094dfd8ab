"""Create a named array that describes itself (a structured dtype: a frame number and an
image), update it in place under its lock, and publish each new frame.  The array lives
as long as a process has it open (the default lifetime, the same on Windows): the writer
keeps it until the reader says it is done (a named Event)."""

import sys
import time

import numpy as np

import mapshare

FRAMES = 50
dtype = np.dtype([("frame", "<i8"), ("image", "<f4", (48, 64))])

name = sys.argv[1] if len(sys.argv) > 1 else "example-array"
done = mapshare.Event.create(name + "-done")        # made first: the reader opens it
try:
    with mapshare.SharedArray.create(name, (), dtype) as arr:
        a = arr.array                               # an np.ndarray onto shared memory
        for frame in range(1, FRAMES + 1):
            with arr.lock():                        # readers never see half a frame
                a["image"] = frame                  # work on it like any ndarray
                a["frame"] = frame
            arr.publish()                           # wake every wait_for_version
            time.sleep(0.01)
        print(f"writer: published {arr.version} frames of {dtype}")
        if not done.wait(timeout=30):
            sys.exit("writer: the reader never finished")
finally:
    done.close()
    done.unlink()
