"""The C methods under mapshare.multiprocessing's locks and semaphores
(``mapshare._core.MPLock``, ``mapshare._core.MPSemaphore``): ``acquire(block=True,
timeout=None)``, ``release()``, ``__enter__`` and ``__exit__`` are C (no Python frame on
``with lock:``, as with the standard SemLock), with the standard signatures, return
values and exceptions; the holder bookkeeping they keep; robust recovery when a real
process holding the lock is SIGKILLed; misuse of the bare C types never crashes."""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time
import types
from typing import Any

import pytest

from mapshare import _core
from mapshare import multiprocessing as mp
from mapshare._errors import NotOwnerError
from mapshare.multiprocessing import synchronize
from mp_support import mp_prefix  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("mp_prefix")

LOCKS = ["Lock", "RLock"]
SEMAPHORES = ["Semaphore", "BoundedSemaphore"]


def _in_thread(fn: Any, *args: Any) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    t.join(60)
    assert not t.is_alive()
    return out[0]


# ---------------------------------------------------------------- the methods are C

@pytest.mark.parametrize("kind", LOCKS + SEMAPHORES)
def test_the_hot_methods_are_c_methods_with_the_standard_signature(kind: str) -> None:
    cls = getattr(synchronize, kind)
    base = _core.MPLock if kind in LOCKS else _core.MPSemaphore
    for meth in ("acquire", "release", "__enter__", "__exit__"):
        # inherited from the C type, not overridden by a Python function
        assert getattr(cls, meth) is base.__dict__[meth], meth
        assert isinstance(base.__dict__[meth], types.MethodDescriptorType)
    obj = getattr(mp, kind)()
    assert str(inspect.signature(obj.acquire)) == "(block=True, timeout=None)"
    assert str(inspect.signature(obj.release)) == "()"


@pytest.mark.parametrize("kind", LOCKS + SEMAPHORES)
def test_acquire_arguments_positional_keyword_and_wrong(kind: str) -> None:
    obj = getattr(mp, kind)()
    assert obj.acquire(True, None) is True
    obj.release()
    assert obj.acquire(block=True, timeout=1.5) is True
    obj.release()
    assert obj.acquire(timeout=0) is True
    obj.release()
    assert obj.acquire(False, 10) is True  # no block: one try, the timeout ignored
    obj.release()
    assert obj.acquire(0) is True  # block is any truth value
    obj.release()
    with pytest.raises(TypeError):
        obj.acquire(True, None, 1)
    with pytest.raises(TypeError):
        obj.acquire(blocking=True)
    with pytest.raises(TypeError):
        obj.acquire(True, block=True)
    with pytest.raises(TypeError):
        obj.acquire(True, "1")
    with pytest.raises(TypeError):
        obj.release(1)


@pytest.mark.parametrize("kind", LOCKS + SEMAPHORES)
def test_enter_returns_true_and_exit_returns_none(kind: str) -> None:
    obj = getattr(mp, kind)(**({"value": 1} if kind in SEMAPHORES else {}))
    assert obj.__enter__() is True
    assert obj.__exit__(None, None, None) is None
    with obj as got:
        assert got is True
        assert obj.acquire(False) is (kind == "RLock")
        if kind == "RLock":
            obj.release()
    assert obj.acquire(False) is True
    obj.release()


# ---------------------------------------------------------------- timeouts

@pytest.mark.parametrize("kind", LOCKS + SEMAPHORES)
def test_timeout_when_another_thread_holds_it(kind: str) -> None:
    obj = getattr(mp, kind)()
    assert obj.acquire() is True
    assert _in_thread(obj.acquire, False) is False
    t0 = time.monotonic()
    assert _in_thread(obj.acquire, True, 0.1) is False
    assert time.monotonic() - t0 >= 0.08  # Windows' clock ticks every ~15.6 ms
    assert _in_thread(obj.acquire, True, -5) is False  # negative: one try
    obj.release()

    def take_and_give_back() -> bool:
        # a thread that ended holding a lock leaves it to be taken over (a robust
        # lock), not released: give it back here
        got = bool(obj.acquire(True, 30))
        obj.release()
        return got

    assert _in_thread(take_and_give_back) is True


def test_lock_timeout_on_itself_waits_then_returns_false() -> None:
    lock = mp.Lock()
    lock.acquire()
    t0 = time.monotonic()
    assert lock.acquire(True, 0.1) is False  # as the standard lock: it waits it out
    assert time.monotonic() - t0 >= 0.08
    with pytest.raises(RuntimeError, match="not reentrant"):
        lock.acquire()
    lock.release()


def test_a_waiter_is_woken_by_release() -> None:
    lock = mp.Lock()
    lock.acquire()
    got: list[Any] = []
    go = threading.Event()

    def waiter() -> None:
        got.append(lock.acquire(True, 60))
        got.append(lock._owner == threading.get_ident())
        go.wait(60)
        lock.release()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    lock.release()
    for _ in range(600):
        if len(got) == 2:
            break
        time.sleep(0.1)
    assert got == [True, True]
    with pytest.raises(NotOwnerError):  # held by the other thread, not by this one
        lock.release()
    go.set()
    t.join(60)
    assert lock.acquire(False) is True
    lock.release()


# ---------------------------------------------------------------- errors

def test_lock_release_errors() -> None:
    lock = mp.Lock()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    lock.acquire()
    assert isinstance(_error_in_thread(lock.release), NotOwnerError)
    assert lock._owner == threading.get_ident()  # the failed release changed nothing
    lock.release()
    assert lock._owner is None


def _error_in_thread(fn: Any) -> Any:
    """What ``fn()`` raised in another thread (None if nothing)."""

    def run() -> Any:
        try:
            fn()
        except Exception as e:
            return e
        return None

    return _in_thread(run)


def test_rlock_counts_and_release_errors() -> None:
    r = mp.RLock()
    with pytest.raises(AssertionError):
        r.release()
    assert r.acquire() and r.acquire(False) and r.acquire(True, 0)
    assert r._count() == 3 and r._level == 3 and r._owner == threading.get_ident()
    assert isinstance(_error_in_thread(r.release), AssertionError)
    assert _in_thread(r.acquire, False) is False
    r.release()
    r.release()
    assert r._lock.locked()
    r.release()
    assert not r._lock.locked() and r._owner is None and r._level == 0
    with pytest.raises(AssertionError):
        r.release()


def test_bounded_semaphore_release_errors() -> None:
    b = mp.BoundedSemaphore(2)
    with pytest.raises(ValueError, match="released too many times"):
        b.release()
    assert b.acquire() and b.acquire() and not b.acquire(False)
    b.release()
    b.release()
    with pytest.raises(ValueError, match="released too many times"):
        b.release()
    zero = mp.BoundedSemaphore(0)
    assert zero.acquire(False) is False
    with pytest.raises(ValueError, match="released too many times"):
        zero.release()
    s = mp.Semaphore(0)
    s.release()  # unbounded: above the initial value
    assert s.get_value() == 1


def test_the_bare_c_types_refuse_misuse() -> None:
    for t in (_core.MPLock, _core.MPSemaphore):
        obj: Any = t()
        with pytest.raises(ValueError, match=r"no \w+ bound"):
            obj.acquire()
        with pytest.raises(ValueError, match=r"no \w+ bound"):
            obj.release()
        with pytest.raises(ValueError, match=r"no \w+ bound"):
            obj.__exit__(None, None, None)
    lock: Any = _core.MPLock()
    with pytest.raises(TypeError):
        lock._bind(object(), False)
    held = mp.Lock()
    lock._bind(held._lock, False)
    with pytest.raises(ValueError, match="already bound"):
        lock._bind(held._lock, False)
    sem: Any = _core.MPSemaphore()
    with pytest.raises(TypeError):
        sem._bind(held._lock, False, 1)
    lock._owner = None
    assert lock._owner is None and lock._level == 0
    lock._level = -3
    assert lock._level == 0
    with pytest.raises(TypeError):
        lock._owner = "me"
    del lock, sem


# ---------------------------------------------------------------- processes

def _hold_and_die(obj: Any, ready: Any, times: int) -> None:
    for _ in range(times):
        obj.__enter__()
    ready.set()
    time.sleep(600)


@pytest.mark.posix_only("SIGKILL")
@pytest.mark.needs_fork
@pytest.mark.parametrize("kind", LOCKS)
def test_a_sigkilled_holder_process_hands_the_lock_over(kind: str) -> None:
    ctx = mp.get_context("fork")
    lock, ready = getattr(ctx, kind)(), ctx.Event()
    p = ctx.Process(target=_hold_and_die, args=(lock, ready, 2 if kind == "RLock" else 1))
    p.start()
    try:
        assert ready.wait(60)
        assert lock.acquire(False) is False
        assert lock.acquire(True, 0.05) is False
        assert lock._owner is None
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(60)
    assert p.exitcode == -signal.SIGKILL
    with lock as got:  # the C __enter__ takes it over, no exception
        assert got is True
        assert lock._owner == threading.get_ident() and lock._count() == 1
    assert lock.acquire(False) is True  # consistent again: an ordinary lock
    lock.release()


# ---------------------------------------------------------------- several locks per thread
# The platform layer keeps the locks a thread holds newest last and searches from the
# newest; on Linux the uncontended acquire/release links the lock into the thread's
# robust list itself, while a contended acquire goes through glibc.  These tests mix the
# two and release out of order, then check that each lock is still free, refused or
# recovered as it must be -- recovery after a SIGKILL only works if the kernel could walk
# the thread's robust list, so it checks the list the two paths built together.


def test_several_locks_released_in_any_order() -> None:
    locks = [mp.Lock() for _ in range(4)]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]):
        for lk in locks:
            assert lk.acquire(False) is True
        for lk in locks:
            assert lk.acquire(False) is False  # held by this thread: refused, not taken
            assert _in_thread(lk.acquire, False) is False
        for n, i in enumerate(order):
            locks[i].release()
            assert _in_thread(lambda lk=locks[i]: lk.acquire(False) and lk.release()) is None
            for j in order[n + 1:]:  # the others are still held by this thread
                assert locks[j].acquire(False) is False
                assert isinstance(_error_in_thread(locks[j].release), NotOwnerError)
        for lk in locks:
            with pytest.raises(ValueError, match="released too many times"):
                lk.release()


def _hold_mixed_and_die(locks: Any, ready: Any) -> None:
    a, b, c, d = locks
    assert a.acquire() is True  # uncontended
    gate = threading.Event()

    def hold_b_briefly() -> None:
        b.acquire()
        gate.set()
        time.sleep(0.2)
        b.release()

    t = threading.Thread(target=hold_b_briefly)
    t.start()
    gate.wait(60)
    assert b.acquire(True, 60) is True  # contended: glibc's timed lock
    t.join(60)
    assert c.acquire() is True
    b.release()  # out of the middle of the robust list
    assert d.acquire(False) is True
    ready.set()
    time.sleep(600)


@pytest.mark.posix_only("SIGKILL")
@pytest.mark.needs_fork
def test_a_sigkilled_holder_of_several_locks_taken_both_ways_hands_all_over() -> None:
    ctx = mp.get_context("fork")
    locks, ready = [ctx.Lock() for _ in range(4)], ctx.Event()
    p = ctx.Process(target=_hold_mixed_and_die, args=(locks, ready))
    p.start()
    try:
        assert ready.wait(60)
        assert [lk.acquire(False) for lk in locks] == [False, True, False, False]
        locks[1].release()
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(60)
    assert p.exitcode == -signal.SIGKILL
    for lk in locks:  # the kernel marked every lock the child held: all taken over
        assert lk.acquire(True, 30) is True
    for lk in reversed(locks):
        lk.release()
    assert all(lk.acquire(False) for lk in locks)  # ordinary locks again
    for lk in locks:
        lk.release()


def test_a_thread_that_ends_holding_locks_leaves_them_to_be_taken_over() -> None:
    locks = [mp.Lock() for _ in range(3)]

    def take_all() -> bool:
        for lk in locks:
            assert lk.acquire(False) is True
        locks[1].release()
        return bool(locks[1].acquire(False))

    assert _in_thread(take_all) is True
    for lk in locks:  # the thread's robust list was intact at its exit
        assert lk.acquire(True, 30) is True
    for lk in locks:
        lk.release()


def _report_owner(lock: Any, q: Any) -> None:
    q.put((lock._owner, lock._level, lock._count(), lock.acquire(False)))


@pytest.mark.posix_only("fork")
@pytest.mark.needs_fork
def test_a_forked_child_does_not_inherit_the_holder_record() -> None:
    ctx = mp.get_context("fork")
    r, q = ctx.RLock(), ctx.SimpleQueue()
    r.acquire()
    r.acquire()
    p = ctx.Process(target=_report_owner, args=(r, q))
    p.start()
    assert q.get() == (None, 0, 0, False)  # the parent still holds it
    p.join(60)
    assert p.exitcode == 0
    assert r._count() == 2
    r.release()
    r.release()


# ---------------------------------------------------------------- the queues' plain pickle

PLAIN = [0, -1, 2**70, 1.5, 1j, "s", "é" * 40, b"\x00x", None, True, False, (), [],
         {}, (1, "two", 3.0), [1, [2, [3]]], {"a": (1, 2), 3: [None]}, ("x", "x"),
         list(range(60))]


@pytest.mark.parametrize("obj", PLAIN, ids=repr)
def test_plain_objects_pickle_as_the_forkingpickler_does(obj: Any) -> None:
    import pickle
    from multiprocessing.reduction import ForkingPickler

    from mapshare.multiprocessing import queues

    data = _core._dumps_plain(obj, pickle.DEFAULT_PROTOCOL, queues._REDUCERS)
    assert data == bytes(ForkingPickler.dumps(obj))
    assert queues._dumps(obj) == data


def test_other_objects_go_to_the_forkingpickler() -> None:
    import functools
    import pickle
    from multiprocessing.reduction import ForkingPickler

    from mapshare.multiprocessing import queues

    reducers = queues._REDUCERS
    nested: list[Any] = []
    nested.append(nested)
    deep: Any = 1
    for _ in range(20):
        deep = (deep,)

    class Int(int):
        pass

    for obj in (functools.partial(print), [list.append], list(range(100)), nested, deep,
                Int(3), {1, 2}, bytearray(b"x"), {"k": object()}):
        assert _core._dumps_plain(obj, pickle.DEFAULT_PROTOCOL, reducers) is None
    dumps_plain: Any = _core._dumps_plain  # called wrongly on purpose
    with pytest.raises(TypeError):
        dumps_plain(1, 4)
    with pytest.raises(TypeError):
        dumps_plain(1, 4, [])

    # a reducer registered for a builtin type is honoured, as by the standard queue
    ForkingPickler.register(complex, lambda c: (complex, (c.real, -c.imag)))
    try:
        assert _core._dumps_plain((1, 2j), pickle.DEFAULT_PROTOCOL, reducers) is None
        q = mp.SimpleQueue()
        q.put((1, 2j))
        assert q.get() == (1, -2j)
        q.close()
    finally:
        del ForkingPickler._extra_reducers[complex]  # type: ignore[attr-defined]


# ------------------------------------------- scalars pickled and unpickled without a pickler

SCALARS = [0, 1, 255, 256, 65535, 65536, -1, -255, -256, -65536, 2**31 - 1, -(2**31),
           2**31, -(2**31) - 1, 2**63, 0.0, -0.0, 1.5, 1e308, float("inf"), float("-inf"),
           float("nan"), None, True, False, "", "abc", "é" * 127, "x" * 255, "x" * 256,
           "\ud800", "a\x00b", b"", b"\x00\xff", b"y" * 255, b"y" * 256,
           # tuples of up to 3 scalars; the same str twice is a back-reference (BINGET),
           # left to the pickler
           (), (1,), (1, "ab", 2.5), (None, True, False), ("x" * 255, b"y" * 255, 2**31 - 1),
           ("a", "a"), ("a", "b", "a"), (b"z", b"z"), (1, 1, 1), (1, 2, 3, 4), ((1,),),
           (2**40,), ("x" * 256,), ("\ud800", 1), (float("nan"), -0.0)]


def _same(a: Any, b: Any) -> bool:
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a:
        return b != b
    return type(a) is type(b) and a == b and repr(a) == repr(b)


@pytest.mark.parametrize("obj", SCALARS, ids=lambda o: repr(o)[:20])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_scalar_pickles_are_the_standard_bytes(obj: Any, protocol: int) -> None:
    """_dumps_plain writes the pickle of a scalar, or of a tuple of up to 3 of them,
    itself (no Pickler); the bytes are exactly pickle.dumps's, for every protocol, and
    _loads_plain reads them back as pickle.loads does (a NaN's bits included)."""
    import pickle
    import struct

    from mapshare.multiprocessing import queues

    data = _core._dumps_plain(obj, protocol, queues._REDUCERS)
    assert data == pickle.dumps(obj, protocol)
    back = _core._loads_plain(data, pickle.loads)
    assert _same(back, pickle.loads(data))
    pairs = zip(back, obj) if type(obj) is tuple else [(back, obj)]
    for a, b in pairs:
        if isinstance(b, float):
            assert struct.pack("<d", a) == struct.pack("<d", b)


def test_loads_plain_is_pickle_loads_on_hostile_bytes() -> None:
    """The bytes come from shared memory: every truncation and every single-byte change
    of the scalar pickles gives what pickle.loads gives (the same value, or the same
    exception type), never a crash."""
    import pickle

    calls = []

    def loads(data: Any) -> Any:
        calls.append(data)
        return pickle.loads(data)

    seen = 0
    for obj in SCALARS:
        good = pickle.dumps(obj, 4)
        variants = [good[:i] for i in range(len(good))]
        for i in range(min(len(good), 24)):
            for b in (0x00, 0x01, 0x2E, 0x7F, 0x80, 0x94, 0x95, 0xFF):
                variants.append(good[:i] + bytes([b]) + good[i + 1:])
        variants.append(good + b"trailing")
        for data in variants:
            try:
                want: Any = pickle.loads(data)
            except Exception as e:  # any error pickle raises
                with pytest.raises(type(e)):
                    _core._loads_plain(data, loads)
            else:
                assert _same(_core._loads_plain(data, loads), want)
            seen += 1
    assert seen > 1000
    assert calls, "forms it does not read go to the loads it was given"


def test_loads_plain_hands_everything_else_to_loads() -> None:
    import pickle

    got: list[Any] = []

    def loads(data: Any) -> Any:
        got.append(data)
        return "from loads"

    for data in (pickle.dumps((1, 2, 3, 4)), pickle.dumps(2**70), bytearray(pickle.dumps(1)),
                 memoryview(pickle.dumps(1)), pickle.dumps(1, 1), b""):
        assert _core._loads_plain(data, loads) == "from loads"
    assert len(got) == 6
    loads_plain: Any = _core._loads_plain  # called wrongly on purpose
    with pytest.raises(TypeError):
        loads_plain(b"x")
    with pytest.raises(TypeError):
        loads_plain(pickle.dumps([1]), None)  # None is not callable
    # a reducer registered for int: _dumps_plain leaves the object to the ForkingPickler
    # (whose C pickler writes an exact int itself all the same)
    from multiprocessing.reduction import ForkingPickler

    from mapshare.multiprocessing import queues

    ForkingPickler.register(int, lambda i: (int, (str(i + 1),)))
    try:
        assert _core._dumps_plain(5, 4, queues._REDUCERS) is None
    finally:
        del ForkingPickler._extra_reducers[int]  # type: ignore[attr-defined]
