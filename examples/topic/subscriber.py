"""Join late with start="history": the messages published before joining, then the live
ones, with no gap and no duplicate; stop at the end marker."""

import sys

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-topic"
with mapshare.Topic.open(name, wait=10) as topic:   # waits up to 10 s for the publisher
    with topic.subscribe(start="history") as sub:
        print(f"subscriber: joined at sequence number {sub.position}")
        expected = sub.position
        for msg in sub:                              # Lagged would end the loop: none here
            if msg == b"end":
                break
            assert msg == b"msg %d" % expected, f"gap or duplicate at {expected}: {msg!r}"
            expected += 1
        print(f"subscriber: received {sub.received} messages, missed {sub.missed}")
        ok = sub.position == 10_101 and sub.missed == 0 and expected == 10_100
sys.exit(0 if ok else 1)
