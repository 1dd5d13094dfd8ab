"""One keyword set on every factory, waiting for a name to
appear, and bad input that gets a clear error instead of a wrong result."""

from __future__ import annotations

import inspect
import math
import os
import threading
import time
from typing import Any, Callable

import pytest

import mapshare

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    given = None  # type: ignore[assignment]

KINDS: list[type[Any]] = [
    mapshare.Segment, mapshare.Lock, mapshare.Event, mapshare.Semaphore, mapshare.Channel,
]

# ---- one keyword set ---------------------------------------------------------------------

CREATE_KW = {"mode", "lifetime", "global_namespace", "spin"}
OPEN_KW = {"allow_foreign", "global_namespace", "wait", "init_timeout", "spin"}
OPEN_OR_CREATE_KW = (CREATE_KW | OPEN_KW) - {"wait"}


def _keywords(fn: Callable[..., Any]) -> set[str]:
    return {
        p.name for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_every_factory_takes_the_shared_keywords(cls: type[Any]) -> None:
    assert _keywords(cls.create) >= CREATE_KW, cls
    assert _keywords(cls.open) >= OPEN_KW, cls
    assert _keywords(cls.open_or_create) >= OPEN_OR_CREATE_KW, cls
    # and the same defaults for the same meaning
    for fn in (cls.create, cls.open, cls.open_or_create):
        params = inspect.signature(fn).parameters
        defaults = {"mode": 0o600, "lifetime": "shared", "global_namespace": False,
                    "spin": None, "allow_foreign": False, "wait": 0, "init_timeout": 2.0}
        for k, v in defaults.items():
            if k in params:
                assert params[k].default == v, (cls, fn, k)


def _make(cls: type[Any], name: str, how: str, **kw: Any) -> Any:
    size = {mapshare.Segment: (64,), mapshare.Channel: (4096,)}.get(cls, ())
    if how == "open":
        return cls.open(name, **kw)
    return getattr(cls, how)(name, *size, **kw)


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_factories_accept_the_keywords_and_return_the_class(cls: type[Any], name: str) -> None:
    made = _make(cls, name, "create", mode=0o600, lifetime="shared", spin=0.0)
    try:
        assert type(made) is cls and made.spin == 0.0
        other = _make(cls, name, "open", allow_foreign=False, wait=0, init_timeout=1.0,
                      spin=0.001)
        assert type(other) is cls and other.spin == 0.001
        other.close()
        third = _make(cls, name, "open_or_create", allow_foreign=True, init_timeout=1.0)
        assert type(third) is cls
        third.close()
    finally:
        made.close()


@pytest.mark.posix_only("mode bits of /dev/shm objects")
def test_allow_foreign_is_passed_through_by_every_kind(name: str) -> None:
    # A world-writable object is refused without allow_foreign, for every kind (before,
    # only Segment.open took the option; the message told users of the others to pass it).
    for cls in KINDS:
        made = _make(cls, name, "create", mode=0o666)
        try:
            os.chmod("/dev/shm" + made_os_name(name), 0o666)
            with pytest.raises(mapshare.PermissionDeniedError, match="allow_foreign=True"):
                cls.open(name)
            cls.open(name, allow_foreign=True).close()
        finally:
            made.close()


def made_os_name(name: str) -> str:
    from mapshare import _naming

    return _naming.os_name(name)


# ---- waiting for a name ------------------------------------------------------------------


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_open_waits_for_the_name_to_appear(cls: type[Any], name: str) -> None:
    made: list[Any] = []

    def create_later() -> None:
        time.sleep(0.3)
        made.append(_make(cls, name, "create"))

    t = threading.Thread(target=create_later)
    t.start()
    try:
        t0 = time.monotonic()
        opened = cls.open(name, wait=30)
        assert time.monotonic() - t0 < 29  # woken by the creation, not by the deadline
        assert type(opened) is cls
        opened.close()
    finally:
        t.join()
        for m in made:
            m.close()


def test_open_wait_gives_up_with_the_name(name: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(mapshare.SegmentNotFoundError, match=f"no segment named '{name}'"):
        mapshare.Lock.open(name, wait=0.2)
    assert time.monotonic() - t0 >= 0.2
    with pytest.raises(mapshare.SegmentNotFoundError, match=f"'{name}'"):
        mapshare.Channel.open(name)  # wait=0: at once, and with the logical name


@pytest.mark.parametrize("bad", [-1, "5", True, math.nan])
def test_open_wait_and_init_timeout_are_checked(bad: Any, name: str) -> None:
    for kw in ("wait", "init_timeout"):
        with pytest.raises((TypeError, ValueError), match=kw):
            mapshare.Segment.open(name, **{kw: bad})


def test_timeout_is_renamed_init_timeout(name: str) -> None:
    # Segment.open(name, timeout=...) meant "wait for the header", which readers took for
    # "wait for the name"; both now have their own names
    with pytest.raises(TypeError, match="'timeout'"):
        mapshare.Segment.open(name, timeout=1.0)  # type: ignore[call-arg]


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [2**64 + 16, 2**64, 2**63, -1, True, 1.5, "16"])
def test_create_refuses_bad_sizes(size: Any, name: str) -> None:
    with pytest.raises((TypeError, ValueError), match="size"):
        mapshare.Segment.create(name, size)
    assert not os.path.exists("/dev/shm" + made_os_name(name))


def test_offsets_do_not_wrap(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        for call in (
            lambda off: seg.write(b"x", offset=off),
            lambda off: seg.read(1, offset=off),
            lambda off: seg.view(off, 1),
        ):
            with pytest.raises(ValueError, match="too large"):
                call(2**64 + 3)
            with pytest.raises(ValueError, match="offset must be >= 0, not -1"):
                call(-1)
            with pytest.raises(TypeError, match="offset must be an int, not bool"):
                call(True)
        assert seg.read() == bytes(64)  # nothing was written at offset 3
        with pytest.raises(ValueError, match="n must be >= 0"):
            seg.read(-1)
        with pytest.raises(ValueError, match="18446744073709551615") as info:
            seg.write(b"x", offset=2**64 + 3)
        assert "18446744073709551619" in str(info.value)


def test_counts_are_checked(name: str) -> None:
    with pytest.raises(TypeError, match="capacity must be an int"):
        mapshare.Channel.create(name, True)
    with pytest.raises(ValueError, match="maximum"):
        mapshare.Semaphore.create(name, 2**32 + 1)
    with pytest.raises(TypeError, match="value"):
        mapshare.Semaphore.create(name, True)
    sem = mapshare.Semaphore.create(name, 0, maximum=3)
    try:
        with pytest.raises(ValueError, match="too large"):
            sem.release(2**32 + 1)  # wrapped to 1 before
        assert sem.value == 0
        with pytest.raises(TypeError, match="bool"):
            sem.release(True)
    finally:
        sem.close()


@pytest.mark.parametrize("bad", [-1, -0.5, "1", True, math.nan, [1]])
def test_bad_timeouts_are_refused_even_when_no_wait_is_needed(bad: Any, name: str) -> None:
    with mapshare.Channel.create(name, 4096) as ch:
        ch.send(b"a")
        with pytest.raises((TypeError, ValueError), match="timeout"):
            ch.send(b"b", bad)  # room: would not have waited
        with pytest.raises((TypeError, ValueError), match="timeout"):
            ch.receive(bad)  # a message: would not have waited
        with pytest.raises((TypeError, ValueError), match="timeout"):
            ch.receive_view(timeout=bad)
        assert ch.receive(timeout=0) == b"a"  # nothing was consumed or sent by the above
        with pytest.raises(mapshare.ChannelEmpty):
            ch.receive_nowait()
    lock = mapshare.Lock.create(name + "l")
    try:
        with pytest.raises((TypeError, ValueError), match="timeout"):
            lock.acquire(bad)
        assert not lock.locked()
    finally:
        lock.close()


def test_good_timeouts_still_work(name: str) -> None:
    with mapshare.Channel.create(name, 4096) as ch:
        for t in (None, 0, 0.0, 1, 2.5):
            ch.send(b"x", t)
            assert ch.receive(t) == b"x"


def test_create_in_refuses_a_channel_segment(name: str) -> None:
    with mapshare.Channel.create(name, 4096) as ch:
        ch.send(b"precious")
        for make in (
            lambda: mapshare.Event.create_in(ch.segment, 0),
            lambda: mapshare.Semaphore.create_in(ch.segment, 0),
            lambda: mapshare.Event.open_in(ch.segment, 0),
            lambda: mapshare.Semaphore.open_in(ch.segment, 0),
        ):
            with pytest.raises(TypeError, match="plain"):
                make()
        # the core refuses too, whatever Python object reaches it
        with pytest.raises(TypeError, match="plain segment"):
            mapshare._core.Event(ch.segment._core, 0, True)
        assert ch.receive(timeout=0) == b"precious"


def test_create_in_ranges_stay_in_the_user_area(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        for off in (-8, 64, 60, 2**64 - 8, 2**64 + 8, 3):
            with pytest.raises(ValueError, match="offset"):
                mapshare.Event.create_in(seg, off)
            with pytest.raises(ValueError, match="offset"):
                mapshare.Semaphore.create_in(seg, off)
        mapshare.Event.create_in(seg, 48)  # the last 16 bytes are fine (an event is 16)
        with pytest.raises(ValueError, match="offset"):
            mapshare.Event.create_in(seg, 56)
        with pytest.raises(TypeError, match="must be an int, not bool"):
            mapshare.Event.create_in(seg, True)


def test_open_in_where_nothing_was_created(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        with pytest.raises(mapshare.LayoutError, match="no semaphore at offset 16"):
            mapshare.Semaphore.open_in(seg, 16)  # zeroes: maximum 0
        seg.write(b"\xff" * 8, 32)
        with pytest.raises(mapshare.LayoutError, match="no event at offset 32"):
            mapshare.Event.open_in(seg, 32)
        # zeroes look like a clear event and a plausible value: the tag tells them apart
        with pytest.raises(mapshare.LayoutError, match="no event at offset 0"):
            mapshare.Event.open_in(seg, 0)
        seg.write(b"\x01\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00", 48)
        with pytest.raises(mapshare.LayoutError, match="no semaphore at offset 48"):
            mapshare.Semaphore.open_in(seg, 48)
        ev = mapshare.Event.create_in(seg, 0)
        assert not mapshare.Event.open_in(seg, 0).is_set()
        ev.set()
        assert mapshare.Event.open_in(seg, 0).is_set()
        sem = mapshare.Semaphore.create_in(seg, 16, 2, maximum=5)
        assert mapshare.Semaphore.open_in(seg, 16).value == 2 == sem.value


if given is not None:

    @settings(max_examples=200, deadline=None)
    @given(offset=st.integers(min_value=-(2**70), max_value=2**70), n=st.integers(0, 80))
    def test_fuzz_write_read_offsets(offset: int, n: int) -> None:
        # every (offset, length) either lands exactly where asked inside the segment or is
        # refused: never wrapped to somewhere else
        from mapshare.testing import unique_name

        seg = mapshare.Segment.create(unique_name(), 64)
        try:
            data = bytes(range(1, n + 1))
            ok = offset >= 0 and offset + n <= 64
            try:
                seg.write(data, offset=offset)
            except ValueError:
                assert not ok
                assert seg.read() == bytes(64)
            else:
                assert ok
                assert seg.read(n, offset) == data
                assert seg.read().count(b"\0") == 64 - n
        finally:
            seg.close()

    @settings(max_examples=100, deadline=None)
    @given(size=st.one_of(  # no sizes that would really reserve memory on a shared machine
        st.integers(min_value=-(2**70), max_value=-1), st.integers(0, 4096),
        st.integers(min_value=2**63, max_value=2**70), st.booleans(),
        st.floats(allow_nan=True),
    ))
    def test_fuzz_create_sizes(size: Any) -> None:
        from mapshare.testing import unique_name

        n = unique_name()
        try:
            seg = mapshare.Segment.create(n, size)
        except (TypeError, ValueError, OSError, mapshare.MapshareError):
            return
        try:
            assert isinstance(size, int) and not isinstance(size, bool)
            assert 0 <= size <= 4096 and seg.size == size
        finally:
            seg.close()


def test_loan_and_batch_sizes_refuse_bools_and_negatives(name: str) -> None:
    # PyArg's "n" took True as 1: loan(True) lent one byte, receive_many(True) took one
    with mapshare.Channel.create(name, 4096) as ch:
        with pytest.raises(TypeError, match="n must be an int"):
            ch.loan(True)
        with pytest.raises(TypeError, match="max_messages must be an int"):
            ch.receive_many(True)
        with pytest.raises(ValueError, match="n must be >= 0"):
            ch.loan(-1)
        with pytest.raises(ValueError, match="max_messages must be >= 1"):
            ch.receive_many(0)
        with ch.loan(3) as buf:
            buf[:] = b"abc"
        assert ch.receive_many(5, timeout=0) == [b"abc"]


# ---- the rule for keywords that cannot apply --------------------------------------------

# What each kind adds to the shared set, and nothing else: a keyword that cannot apply to
# a kind is not accepted by it (TypeError) rather than accepted and ignored
# (docs/segment.md, "Where a keyword cannot apply").
OWN_KW: dict[tuple[type[Any], str], set[str]] = {
    (mapshare.Segment, "create"): {"path"},
    (mapshare.Segment, "open"): {"path", "access", "raw", "kind", "follow_symlinks"},
    (mapshare.Segment, "open_or_create"): {"path"},
    (mapshare.Event, "create"): {"initially_set"},
    (mapshare.Event, "open_or_create"): {"initially_set"},
    (mapshare.Semaphore, "create"): {"maximum"},
    (mapshare.Semaphore, "open_or_create"): {"maximum"},
}


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_factories_take_exactly_the_shared_keywords_and_their_own(cls: type[Any]) -> None:
    shared = {"create": CREATE_KW, "open": OPEN_KW, "open_or_create": OPEN_OR_CREATE_KW}
    for how, kw in shared.items():
        own = OWN_KW.get((cls, how), set())
        assert _keywords(getattr(cls, how)) == kw | own, (cls.__name__, how)


@pytest.mark.parametrize("cls", [mapshare.Lock, mapshare.Event, mapshare.Semaphore,
                                 mapshare.Channel], ids=lambda c: c.__name__)
def test_segment_only_keywords_are_refused_by_other_kinds(cls: type[Any], name: str) -> None:
    for kw in ({"path": "x"}, {"access": "r"}, {"raw": True}, {"follow_symlinks": True}):
        with pytest.raises(TypeError, match="unexpected keyword"):
            cls.open(name, **kw)
    with pytest.raises(TypeError, match="unexpected keyword"):
        _make(cls, name, "open_or_create", wait=1.0)
