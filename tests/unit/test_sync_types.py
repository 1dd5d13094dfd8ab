"""Event and Semaphore are C types built once from (segment, offset), like Lock: the
place is checked at construction, the segment handle keeps only mapping, lifecycle and
data, and an event or semaphore keeps its segment's mapping alive (internal_refs) the way
a Lock does."""

from __future__ import annotations

import gc

import pytest

import mapshare
from mapshare import _core


def test_event_and_semaphore_are_c_types() -> None:
    assert issubclass(mapshare.Event, _core.Event)
    assert issubclass(mapshare.Semaphore, _core.Semaphore)
    assert issubclass(mapshare.Lock, _core.Lock)
    for meth in ("set", "clear", "is_set", "wait"):
        assert getattr(mapshare.Event, meth) is getattr(_core.Event, meth)  # no Python layer
    for meth in ("acquire", "release", "__enter__", "__exit__"):
        assert getattr(mapshare.Semaphore, meth) is getattr(_core.Semaphore, meth)


def test_the_segment_type_keeps_mapping_lifecycle_and_data_only() -> None:
    prefixes = ("event_", "sem_", "lock_acquire", "lock_release")
    per_call = [n for n in dir(_core.Segment) if n.startswith(prefixes)]
    assert per_call == []


@pytest.mark.parametrize("kind", ["event", "semaphore"])
def test_an_object_in_a_segment_counts_as_an_internal_reference(name: str, kind: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        before = seg._core.internal_refs
        obj = (mapshare.Event.create_in(seg, 16) if kind == "event"
               else mapshare.Semaphore.create_in(seg, 16, 2))
        assert seg._core.internal_refs == before + 1
        del obj
        gc.collect()
        assert seg._core.internal_refs == before


@pytest.mark.parametrize("kind", ["event", "semaphore"])
def test_a_named_object_keeps_working_through_its_c_methods(name: str, kind: str) -> None:
    if kind == "event":
        ev = mapshare.Event.create(name)
        try:
            assert ev.wait(0) is False
            ev.set()
            assert ev.is_set() and ev.wait() is True and ev.wait(timeout=0.0) is True
            ev.clear()
            assert ev.wait(timeout=0.01) is False
            with pytest.raises(TypeError):
                ev.wait(nonsense=1)  # type: ignore[call-arg]
            with pytest.raises(ValueError, match="timeout"):
                ev.wait(-1)
        finally:
            ev.close()
            ev.unlink()
    else:
        sem = mapshare.Semaphore.create(name, 1, maximum=2)
        try:
            with sem as s:
                assert s is sem and sem.value == 0
                assert sem.acquire(timeout=0) is False
            assert (sem.value, sem.maximum) == (1, 2)
            sem.release(n=1)
            with pytest.raises(mapshare.SemaphoreOverflowError, match=f"semaphore '{name}'"):
                sem.release()
            with pytest.raises(ValueError, match="timeout"):
                sem.acquire(-1)
        finally:
            sem.close()
            sem.unlink()


def test_use_after_the_segment_is_closed_raises_instead_of_touching_memory(name: str) -> None:
    seg = mapshare.Segment.create(name, 64)
    ev = mapshare.Event.create_in(seg, 0)
    sem = mapshare.Semaphore.create_in(seg, 16)
    seg.close()
    for call in (ev.set, ev.clear, ev.is_set, lambda: ev.wait(0), sem.release,
                 lambda: sem.acquire(0), lambda: sem.value):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_open_in_reports_what_is_at_the_offset(name: str) -> None:
    with mapshare.Segment.create(name, 64) as seg:
        with pytest.raises(mapshare.LayoutError, match=f"no event at offset 8 of segment '{name}'"):
            mapshare.Event.open_in(seg, 8)
        mapshare.Semaphore.create_in(seg, 16, 1)
        seg.write((5).to_bytes(4, "little"), 16)  # value 5 above its maximum 1
        with pytest.raises(mapshare.LayoutError, match=r"value 5, maximum 1"):
            mapshare.Semaphore.open_in(seg, 16)
        with pytest.raises(TypeError):
            _core.Event(seg._core, 24, init=True, bogus=1)  # type: ignore[call-arg]
