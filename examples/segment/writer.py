"""Process 1 of the file-mapping model: create a named segment, copy data in, notify."""

import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-segment"
with mapshare.Segment.create(name, 4096) as seg:      # CreateFileMapping
    seg.wait_for_change(0, timeout=30)                 # a reader said hello
    message = b"Hello from the writer"
    seg.write(len(message).to_bytes(4, "little") + message)   # CopyMemory
    seg.notify()                                       # wake the reader
    seg.wait_for_change(2, timeout=30)                 # the reader's thanks
print("writer: done")
