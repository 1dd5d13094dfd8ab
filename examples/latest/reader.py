"""Follow the newest pose: wait for each update, read the latest complete value (never a
torn one, never blocking the writer), and skip what was overwritten meanwhile -- a
reader of state wants the newest value, not every value."""

import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-latest"
with mapshare.Latest.open(name, access="r", wait=10) as pose:  # read-only; waits 10 s
    done = mapshare.Event.open(name + "-done")
    seen, version, last_t = 0, 0, 0
    while seen < 100:
        pose.wait_for_update(version, timeout=10)         # any version newer than ours
        value, version = pose.get_object()
        assert value["t"] == version > last_t, (value, version)  # t counts the sets
        last_t = value["t"]
        seen += 1
    with pose.view() as mv:                               # zero copy: the raw bytes
        size = len(mv)
    done.set()
    done.close()
print(f"reader: saw {seen} updates, the last was version {version} ({size} bytes), "
      f"skipped {version - seen} older ones")
