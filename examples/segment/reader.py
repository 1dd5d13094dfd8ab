"""Process 2: open the segment by name, wait for the writer's notification, read."""

import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-segment"
# OpenFileMapping + MapViewOfFile; wait= waits (up to 10 s) for the writer to create it
with mapshare.Segment.open(name, wait=10) as seg:
    seg.notify()                                       # hello: counter 0 -> 1
    seg.wait_for_change(1, timeout=30)                 # the writer's data: 1 -> 2
    n = int.from_bytes(seg.read(4), "little")
    print("reader:", seg.read(n, offset=4).decode())
    seg.notify()                                       # thanks: 2 -> 3
