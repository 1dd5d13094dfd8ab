"""Create a named array that describes itself (a structured dtype: a frame number and an
image), update it in place under its lock, and publish each new frame.  The array is
persistent, so it outlives this process: the reader unlinks it when done."""

import sys
import time

import numpy as np

import mapshare

FRAMES = 50
dtype = np.dtype([("frame", "<i8"), ("image", "<f4", (48, 64))])

name = sys.argv[1] if len(sys.argv) > 1 else "example-array"
with mapshare.SharedArray.create(name, (), dtype, lifetime="persistent") as arr:
    a = arr.array                                   # an np.ndarray onto shared memory
    for frame in range(1, FRAMES + 1):
        with arr.lock():                            # readers never see half a frame
            a["image"] = frame                      # work on it like any ndarray
            a["frame"] = frame
        arr.publish()                               # wake every wait_for_version
        time.sleep(0.01)
    print(f"writer: published {arr.version} frames of {dtype}")
