"""The Python half of examples/c: talks to the C program c_side.c both ways (see its
header comment for the three exchanges: a segment, a channel each way, a lock)."""

import struct
import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-c"
GREETING, ANSWER, COUNTER, ROUNDS = 0, 1024, 2048, 10_000

with mapshare.Segment.create(name, 4096) as seg, mapshare.Channel.create(
    f"{name}-to-c", 1 << 16
) as jobs:
    lock = seg.lock()

    # 1. segment: write, notify; the C side answers further on and notifies back
    seen = seg.change_count
    seg.write(b"hello from Python\0", GREETING)
    seg.notify()
    seg.wait_for_change(seen + 1, timeout=30)  # past our own notify: C's answer
    answer = seg.read(1024, ANSWER).split(b"\0", 1)[0].decode()
    print(f"python_side: read {answer!r}")
    assert answer == "hello from C, who read 17 bytes"

    # 2. channels: jobs to C, then its answers back until it closes the stream.  Open
    # the answer channel (C creates it) before sending any job: a 'shared' object goes
    # when its last user closes it, and a C side that answered and finished before we
    # opened it would take it away with its close.
    with mapshare.Channel.open(f"{name}-to-py", wait=30) as answers:
        for i in range(5):
            jobs.send(f"job {i}".encode())
        jobs.close_sending()
        got = [bytes(m).decode() for m in answers]
    print(f"python_side: got {got}")
    assert got == [f"done: job {i}" for i in range(5)]

    # 3. the lock: both sides add ROUNDS to the counter under seg.lock()
    for _ in range(ROUNDS):
        with lock:
            (n,) = struct.unpack_from("<Q", seg.buf, COUNTER)
            # stored whole (one 8-byte copy); struct.pack_into would zero it first
            seg.buf[COUNTER : COUNTER + 8] = struct.pack("<Q", n + 1)
    while True:  # the C side notifies once more when it has finished counting
        seen = seg.change_count
        with lock:
            (n,) = struct.unpack_from("<Q", seg.buf, COUNTER)
        if n >= 2 * ROUNDS:
            break
        seg.wait_for_change(seen, timeout=30)
    print(f"python_side: counter = {n} (no update lost)")
    assert n == 2 * ROUNDS
