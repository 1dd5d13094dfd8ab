"""Increment a shared counter 10,000 times under the segment's robust lock.

Run several at once; kill one with SIGKILL while it holds the lock, and the next
worker is told (OwnerDiedError) and carries on.
"""

import struct
import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-lock"
seg = mapshare.Segment.open_or_create(name, 8)
lock = seg.lock()
for _ in range(10_000):
    try:
        lock.acquire()
    except mapshare.OwnerDiedError:
        print("worker: the previous holder died; the counter is still consistent here")
    try:
        (n,) = struct.unpack_from("<q", seg.buf)
        struct.pack_into("<q", seg.buf, 0, n + 1)
    finally:
        lock.release()
print("worker: counter now", struct.unpack_from("<q", seg.buf)[0])
seg.close()
