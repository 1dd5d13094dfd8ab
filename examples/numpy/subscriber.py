"""Receive arrays as zero-copy views inside the ring and reduce them in place."""

import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-numpy"
ch = mapshare.Channel.open(name, wait=10)              # waits up to 10 s for the publisher
total = 0.0
count = 0
with ch:
    while True:
        try:
            with ch.receive_array_view() as a:         # no copy: a view into the ring
                total += float(a.mean())
                count += 1
        except mapshare.EndOfChannel:
            break
print(f"subscriber: {count} arrays, sum of means {total}")
sys.exit(0 if count == 10 and total == sum(range(10)) else 1)
