"""Receive until the producer closes the channel; check order and count."""

import sys
import time

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-channel"
deadline = time.monotonic() + 10
while True:
    try:
        ch = mapshare.Channel.open(name)
        break
    except mapshare.SegmentNotFoundError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
with ch:
    expected = 0
    for msg in ch:                                     # stops at EndOfChannel
        assert int.from_bytes(msg[:4], "little") == expected, "out of order"
        expected += 1
print(f"consumer: received {expected} messages in order")
sys.exit(0 if expected == 10_000 else 1)
