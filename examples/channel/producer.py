"""Send 10,000 numbered messages, then close the channel for sending."""

import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-channel"
with mapshare.Channel.create(name, capacity=1 << 16) as ch:
    for i in range(10_000):
        ch.send(i.to_bytes(4, "little") * 4)
    ch.close_sending()
    # the channel lives on ('shared' lifetime) until the consumer has closed it too
print("producer: sent 10000 messages")
