"""Open the array by name alone (dtype and shape come from its header), read-only by
default; follow new frames with wait_for_version, check each one whole, then tell the
writer it is done (a named Event)."""

import sys

import mapshare

FRAMES = 50

name = sys.argv[1] if len(sys.argv) > 1 else "example-array"
arr = mapshare.SharedArray.open(name, wait=10)      # waits up to 10 s for the writer
seen = 0
with arr:
    done = mapshare.Event.open(name + "-done")
    a = arr.array
    assert not a.flags.writeable                    # access="r": writes raise ValueError
    version = arr.version
    while True:
        with arr.lock():
            frame = int(a["frame"])
            whole = bool((a["image"] == frame).all())
        assert whole, f"frame {frame} was torn"
        seen += 1
        if frame == FRAMES:
            break
        version = arr.wait_for_version(version, timeout=10)
    print(f"reader: {arr.dtype} {arr.shape}: saw {seen} of {FRAMES} frames, none torn")
    done.set()                                      # the writer may close (and remove) it
    done.close()
sys.exit(0 if frame == FRAMES else 1)
