"""Send ten 1000x1000 float64 arrays (8 MB each); each is copied once, into the ring."""

import sys

import numpy as np

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-numpy"
# Each array takes its bytes plus 48 (an 8-byte record header and 40 bytes of dtype and
# shape, see docs/channel.md); room for k = 2 of them whatever the ring's position:
record = 8 + 40 + 1000 * 1000 * 8
with mapshare.Channel.create(name, capacity=(2 + 1) * record - 8) as ch:
    for i in range(10):
        ch.send_array(np.full((1000, 1000), float(i)))
    ch.close_sending()
print("publisher: sent 10 arrays")
