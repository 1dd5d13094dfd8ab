"""Receive until the producer closes the channel; check order and count."""

import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-channel"
with mapshare.Channel.open(name, wait=10) as ch:       # waits up to 10 s for the producer
    expected = 0
    for msg in ch:                                     # stops at EndOfChannel
        assert int.from_bytes(msg[:4], "little") == expected, "out of order"
        expected += 1
print(f"consumer: received {expected} messages in order")
sys.exit(0 if expected == 10_000 else 1)
