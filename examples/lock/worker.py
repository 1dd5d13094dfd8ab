"""Workers incrementing one shared counter under the segment's robust lock.

Run two (or more: pass the number as the second argument) at once:

    python worker.py NAME 2 & python worker.py NAME 2

Each worker waits until all have arrived, so they really run at the same time, then
increments the counter 10,000 times.  The increment is a read, a pause, and a write:
without the lock the workers would overwrite each other's updates and the total would
come out short.  Each worker counts how often it found the lock held by another, and the
last one to finish checks that no update was lost.

Kill one with SIGKILL while it holds the lock, and the next worker to acquire it is told
(OwnerDiedError, with the lock held) and carries on.
"""

import os
import struct
import sys
import time

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-lock"
workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
ROUNDS = 10_000
COUNTER, ARRIVED, FINISHED = 0, 8, 16  # three int64 fields in the segment

seg = mapshare.Segment.open_or_create(name, 24)
lock = seg.lock()


I64 = struct.Struct("<q")


def put(offset: int, value: int) -> None:
    """Store a counter whole (one 8-byte copy), so that a worker killed while storing
    leaves the old value or the new one.  Not struct.pack_into: it zero-fills the field
    before writing the value, and a kill in between would leave 0 for the next holder."""
    seg.buf[offset : offset + 8] = I64.pack(value)


def take() -> bool:
    """Acquire the lock; True if another worker held it and we had to wait."""
    if lock.acquire(timeout=0):
        return False
    try:
        lock.acquire()
    except mapshare.OwnerDiedError:
        print("worker: the previous holder died; the counter is still consistent here")
    return True


def add(offset: int, n: int = 1) -> int:
    (value,) = I64.unpack_from(seg.buf, offset)
    put(offset, value + n)
    return value + n


# a start line: nobody begins before everybody has opened the segment
take()
add(ARRIVED)
lock.release()
seg.notify()
while True:
    seen = seg.change_count
    if struct.unpack_from("<q", seg.buf, ARRIVED)[0] >= workers:
        break
    seg.wait_for_change(seen, timeout=30)

waited = 0
for _ in range(ROUNDS):
    waited += take()
    try:
        (n,) = struct.unpack_from("<q", seg.buf, COUNTER)
        time.sleep(0)  # a pause between read and write: a lost update without the lock
        put(COUNTER, n + 1)
    finally:
        lock.release()

take()
finished = add(FINISHED)
total = struct.unpack_from("<q", seg.buf, COUNTER)[0]
lock.release()
print(f"worker {os.getpid()}: {ROUNDS} increments; found the lock held {waited} times")
ok = True
if finished == workers:
    ok = total == workers * ROUNDS
    print(f"worker {os.getpid()}: last to finish: counter = {total} "
          f"({'no update lost' if ok else f'expected {workers * ROUNDS}'})")
seg.close()
sys.exit(0 if ok else 1)
