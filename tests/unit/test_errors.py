"""The status -> exception mapping: every status of the C core has one class of its own,
none is the root, internal statuses never reach a user, class names follow the naming
rule (CONTRIBUTING.md, "Exceptions"), and the conditions behind the former catch-all
statuses raise their own classes, naming the object by its logical name."""

from __future__ import annotations

import pytest

import mapshare
from mapshare import _core, _errors

STATUSES = {n: getattr(_core, n) for n in dir(_core) if n.startswith("E_")}
NORMAL_FLOW = {"ChannelFull", "ChannelEmpty", "EndOfChannel", "WaitTimeout", "Lagged",
               "TopicFull", "TopicEmpty", "Overwritten"}


def test_every_status_has_exactly_one_class_and_none_is_the_root() -> None:
    mapped = _errors._STATUS_CLASSES
    internal = _errors._INTERNAL_STATUSES
    assert len(set(STATUSES.values())) == len(STATUSES)  # one code, one constant
    for name, code in STATUSES.items():
        assert code in mapped or code in internal, f"{name} has no class"
    # the internal statuses handled inside the binding have no class at all
    assert _core.E_INTERRUPTED not in mapped and _core.E_RETRY_NO_GIL not in mapped
    classes = list(mapped.values())
    assert len(set(classes)) == len(classes), "two statuses share a class"
    for code, cls in mapped.items():
        assert cls is not mapshare.MapshareError
        assert issubclass(cls, mapshare.MapshareError), cls
        if code in internal:
            assert cls.__name__.startswith("_"), "an internal status maps to a public class"
        else:
            assert getattr(mapshare, cls.__name__) is cls, f"{cls.__name__} not exported"
            assert cls.__name__ in mapshare.__all__
            assert cls.__doc__


@pytest.mark.parametrize("name", sorted(STATUSES))
def test_the_c_side_raises_the_mapped_class(name: str) -> None:
    code = STATUSES[name]
    if code in (_core.E_INTERRUPTED, _core.E_RETRY_NO_GIL):
        # handled inside the binding: reaching the mapping is a bug, reported as such
        with pytest.raises(SystemError, match="internal status"):
            _core._raise_status(code, "what")
        return
    cls = _errors._STATUS_CLASSES[code]
    with pytest.raises(cls) as info:
        _core._raise_status(code, "what")
    assert type(info.value) is cls


def test_exception_names_follow_the_naming_rule() -> None:
    for name in mapshare.__all__:
        obj = getattr(mapshare, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, mapshare.MapshareError), name
            if name in NORMAL_FLOW:
                assert not name.endswith("Error"), name
            elif obj is not mapshare.MapshareError:
                assert name.endswith("Error"), f"{name}: a failure's name ends in Error"


def test_acquiring_a_lock_this_thread_holds_raises_already_held(name: str) -> None:
    lock = mapshare.Lock.create(name)
    try:
        lock.acquire()
        with pytest.raises(mapshare.AlreadyHeldError, match=f"lock of '{name}'.*reentrant"):
            lock.acquire()
        with pytest.raises(RuntimeError):  # what existing code catches still works
            lock.acquire(timeout=0)
        lock.release()
    finally:
        lock.close()
        lock.unlink()


def test_a_second_loan_or_view_on_one_handle_raises_window_open(name: str) -> None:
    ch = mapshare.Channel.create(name, 4096)
    try:
        with ch.loan(3) as m:
            m[:] = b"abc"
            with pytest.raises(mapshare.WindowOpenError, match=f"channel '{name}'.*loan"):
                ch.loan(1)
            with pytest.raises(mapshare.WindowOpenError, match=f"channel '{name}'.*loan"):
                ch.send(b"x")  # needs the send lock this thread's loan holds
        with ch.receive_view() as v:
            assert bytes(v) == b"abc"
            with pytest.raises(mapshare.WindowOpenError, match=f"channel '{name}'.*view"):
                ch.receive_view()
    finally:
        ch.close()
        ch.unlink()


def test_releasing_a_semaphore_above_its_maximum_raises_overflow(name: str) -> None:
    sem = mapshare.Semaphore.create(name, 1)
    try:
        with pytest.raises(mapshare.SemaphoreOverflowError, match=f"semaphore '{name}'"):
            sem.release()
        assert isinstance(mapshare.SemaphoreOverflowError(), ValueError)
        assert sem.value == 1
    finally:
        sem.close()
        sem.unlink()
