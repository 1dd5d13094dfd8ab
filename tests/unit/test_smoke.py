"""The first things a user tries: create, write, open, read, close."""

import mapshare


def test_create_write_open_read(name: str) -> None:
    with mapshare.Segment.create(name, 100) as seg:
        assert seg.write(b"hello", offset=10) == 5
        with mapshare.Segment.open(name) as other:
            assert other.read(5, offset=10) == b"hello"
            assert other.size == 100


def test_channel_round_trip(name: str) -> None:
    with mapshare.Channel.create(name, 4096) as ch:
        ch.send(b"ping")
        assert ch.receive() == b"ping"
        ch.unlink()
