"""Publish 100 messages before anyone listens (history), wait for a subscriber, then
publish 10,000 more with back pressure (overflow="block"), and an end marker."""

import sys
import time

import mapshare

name = sys.argv[1] if len(sys.argv) > 1 else "example-topic"
with mapshare.Topic.create(name, capacity=1 << 16, history=100, overflow="block") as topic:
    for i in range(100):                          # nobody subscribed yet: kept as history
        topic.publish(b"msg %d" % i)
    deadline = time.monotonic() + 30
    while not topic.statistics().subscribers:     # wait for the subscriber's table row
        if time.monotonic() > deadline:
            sys.exit("publisher: no subscriber came")
        time.sleep(0.01)
    for i in range(100, 10_100):                  # waits whenever the subscriber is behind
        topic.publish(b"msg %d" % i, timeout=30)
    last = topic.publish(b"end")
    # the topic lives on ('shared' lifetime) until the subscriber has closed it too
print(f"publisher: published {last + 1} messages, the last as sequence number {last}")
