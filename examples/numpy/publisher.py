"""Send ten 1000x1000 float64 arrays (8 MB each); each is copied once, into the ring."""

import sys

import numpy as np

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-numpy"
with mapshare.Channel.create(name, capacity=20 << 20) as ch:
    for i in range(10):
        ch.send_array(np.full((1000, 1000), float(i)))
    ch.close_sending()
print("publisher: sent 10 arrays")
