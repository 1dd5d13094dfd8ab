"""Every way Python code can hold on to mapped memory -- memoryviews, slices, casts,
numpy arrays made with ``np.ndarray(buffer=)`` or ``np.frombuffer`` (the idioms of
docs/ and of the standard library's multiprocessing.shared_memory page), arrays kept past
a ``with`` block, arrays alive at interpreter exit, handles collected by the GC -- against
``close()``, block exit and interpreter exit.

Each program runs in its own interpreter, so that a segfault is a test failure (the exit
code and the output are checked), not the end of the test session.  Before the mapping
was tied to its exports, each of the close()/block-exit programs crashed with SIGSEGV or
read memory that had been unmapped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from mapshare import _naming
from mapshare.testing import shm_entries

pytest.importorskip("numpy")

pytestmark = pytest.mark.posix_only("checks /dev/shm after the program exits")


def run(program: str, name: str, *, expect: str = "ok\n", code: int = 0) -> str:
    """Run a program with NAME bound; check its exit code, its output and that nothing
    is left under the name."""
    src = "import mapshare, numpy as np, sys, gc\nNAME = sys.argv[1]\n" + textwrap.dedent(
        program
    )
    proc = subprocess.run(
        [sys.executable, "-c", src, name], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == expect, (proc.stdout, proc.stderr)
    assert _naming.os_name(name) not in shm_entries()
    return proc.stderr


# ---- the segment's buffer ------------------------------------------------------------

def test_stdlib_idiom_ndarray_buffer_then_close(name: str) -> None:
    # multiprocessing.shared_memory's example, without its `del c` before close()
    run("""
        seg = mapshare.Segment.create(NAME, 6 * 8)
        c = np.ndarray((6,), dtype=np.int64, buffer=seg.buf)
        c[:] = [1, 1, 2, 3, 5, 8]
        seg.close()
        c[-1] = 888
        assert c.sum() == 900, c
        print("ok")
    """, name)


def test_frombuffer_then_close(name: str) -> None:
    run("""
        seg = mapshare.Segment.create(NAME, 4096)
        a = np.frombuffer(seg.buf, dtype=np.uint8)
        seg.close()
        a[100] = 7
        assert int(a.sum()) == 7
        print("ok")
    """, name)


def test_array_returned_from_a_with_block(name: str) -> None:
    run("""
        def load(size):
            with mapshare.Segment.open_or_create(NAME, size) as seg:
                return np.ndarray((size // 8,), dtype=np.float64, buffer=seg.buf)

        a = load(8 * 1000)
        a[:] = 1.5
        assert a.sum() == 1500.0
        print("ok")
    """, name)


def test_slices_and_casts_of_buf_then_close(name: str) -> None:
    run("""
        seg = mapshare.Segment.create(NAME, 4096)
        part = seg.buf[16:32]
        words = seg.buf.cast("q")
        arr = np.frombuffer(seg.buf[64:], dtype=np.int32)
        seg.close()
        part[0] = 9
        words[100] = 123456789
        arr[0] = -1
        assert bytes(part[:1]) == b"\\x09" and words[100] == 123456789 and arr[0] == -1
        print("ok")
    """, name)


def test_buf_kept_in_a_variable_then_close(name: str) -> None:
    run("""
        seg = mapshare.Segment.create(NAME, 4096)
        mem = seg.buf
        seg.close()
        mem[0:3] = b"abc"
        assert bytes(mem[0:3]) == b"abc"
        print("ok")
    """, name)


def test_collected_handle_leaves_its_array_valid(name: str) -> None:
    run("""
        def make():
            seg = mapshare.Segment.create(NAME, 8 * 512)
            return np.frombuffer(seg.buf, dtype=np.int64)  # seg is collected here

        a = make()
        gc.collect()
        a[:] = 2
        assert a.sum() == 1024
        print("ok")
    """, name)


def test_arrays_alive_at_interpreter_exit(name: str) -> None:
    run("""
        seg = mapshare.Segment.create(NAME, 4096)
        a = np.ndarray((512,), dtype=np.int64, buffer=seg.buf)
        b = np.frombuffer(seg.buf[8:], dtype=np.uint8)
        m = seg.buf.cast("B")
        a[0] = 1
        print("ok")
    """, name)


def test_views_then_close(name: str) -> None:
    run("""
        seg = mapshare.Segment.create(NAME, 3 * 4096)
        v = seg.view(4097, 64)
        a = np.frombuffer(v, dtype=np.uint8)
        with seg.view(10, 16) as w:
            b = np.frombuffer(w, dtype=np.uint8)
            c = np.asarray(w)
        seg.close()
        a[0] = 5
        assert a[0] == 5 and int(b.sum()) == 0 and int(c.sum()) == 0
        print("ok")
    """, name)


# ---- channel windows -----------------------------------------------------------------

def test_receive_array_view_escape_is_reported_and_never_dangles(name: str) -> None:
    run("""
        ch = mapshare.Channel.create(NAME, 1 << 16)
        ch.send_array(np.arange(100, dtype=np.int64))
        with ch.receive_array_view() as arr:
            assert arr.sum() == 4950            # used inside the block: fine
        ch.send_array(np.arange(100, dtype=np.int64))
        try:
            with ch.receive_array_view() as arr:
                kept = arr[10:]
        except BufferError:
            pass
        else:
            raise AssertionError("an escaped slice was not reported")
        for i in range(50):                     # reuse the ring
            ch.send(bytes(1000))
            ch.receive()
        ch.close()
        int(kept.sum())                         # still mapped: no crash
        print("ok")
    """, name)


@pytest.mark.parametrize("make", ["np.frombuffer(v, dtype=np.uint8)",
                                  "np.ndarray((64,), dtype=np.uint8, buffer=v)",
                                  "np.asarray(v)", "v[8:16]"])
def test_receive_view_array_escape_then_close(make: str, name: str) -> None:
    run(f"""
        ch = mapshare.Channel.create(NAME, 1 << 16)
        ch.send(bytes(range(64)))
        with ch.receive_view() as v:             # used and dropped inside: fine
            tmp = {make}
            del tmp
        ch.send(bytes(range(64)))
        try:
            with ch.receive_view() as v:
                a = {make}
        except BufferError:
            pass
        else:
            raise AssertionError("an escaped array was not reported")
        ch.close()
        bytes(a)                                 # still mapped: no crash
        print("ok")
    """, name)


def test_loan_array_then_close(name: str) -> None:
    run("""
        ch = mapshare.Channel.create(NAME, 1 << 16)
        with ch.loan(64) as buf:
            a = np.frombuffer(buf, dtype=np.uint8)
            a[:] = 3
            del a
        assert ch.receive() == bytes([3]) * 64
        try:
            with ch.loan(64) as buf:
                b = np.ndarray((64,), dtype=np.uint8, buffer=buf)
                b[:] = 4
        except BufferError:
            pass                                 # still writable: not sent
        else:
            raise AssertionError("a loan was sent while an array could still write it")
        ch.send(b"next")
        assert ch.receive() == b"next"
        ch.close()
        b[0] = 1                                 # still mapped: no crash
        print("ok")
    """, name)


def test_channel_views_alive_at_interpreter_exit(name: str) -> None:
    run("""
        ch = mapshare.Channel.create(NAME, 1 << 16)
        ch.send_array(np.ones(10))
        ch.send(b"x" * 10)
        view = ch.receive_view()
        m = view.__enter__()                     # a received view left open
        loan = ch.loan(32)
        lm = loan.__enter__()                    # and a loan
        print("ok")
    """, name)


def test_closed_segment_refuses_new_buffers_with_a_clear_error(name: str) -> None:
    run("""
        seg = mapshare.Segment.create(NAME, 64)
        keep = seg.buf
        seg.close()
        for call in (lambda: seg.buf, lambda: seg.view(0, 8), lambda: seg.read(1),
                     lambda: memoryview(seg._core)):
            try:
                call()
            except (ValueError, BufferError):
                pass
            else:
                raise AssertionError("a closed segment handed out memory")
        print("ok")
    """, name)


def test_many_close_cycles_unmap_promptly(name: str) -> None:
    # closing with nothing else referencing the memory unmaps at once: no mapping piles up
    run("""
        for i in range(300):
            seg = mapshare.Segment.create(NAME, 1 << 20)
            seg.buf[0] = 1
            seg.close()
        maps = open("/proc/self/maps").read().count("mapshare.")
        assert maps == 0, maps
        print("ok")
    """, name)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_channel_and_lock_handles_unmap_at_close(name: str) -> None:
    # A Channel or Lock object still referenced after close() does not point into the
    # mapping (it goes through the closed handle's checks): close() unmaps at once.  On
    # Windows a mapped view keeps the name alive, so a deferred unmap there leaked names.
    run("""
        ch = mapshare.Channel.create(NAME, 4096)
        ch.send(b"x")
        lock = mapshare.Lock.create(NAME + "l")
        seg = mapshare.Segment.create(NAME + "s", 4096)
        seg_lock = seg.lock()
        ch.close(); lock.close(); seg.close()
        maps = open("/proc/self/maps").read().count("mapshare.")
        assert maps == 0, maps
        for call in (lambda: ch.receive_nowait(), lambda: lock.acquire(0),
                     lambda: seg_lock.acquire(0)):
            try:
                call()
            except (ValueError, mapshare.MapshareError):
                pass
            else:
                raise AssertionError("a closed handle was used")
        print("ok")
    """, name)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_deferred_unmap_happens_when_the_array_goes(name: str) -> None:
    run("""
        seg = mapshare.Segment.create(NAME, 1 << 20)
        a = np.frombuffer(seg.buf, dtype=np.uint8)
        seg.close()
        assert open("/proc/self/maps").read().count("mapshare.") >= 1
        del a, seg
        gc.collect()
        assert open("/proc/self/maps").read().count("mapshare.") == 0
        print("ok")
    """, name)


def test_stdlib_two_process_example(name: str) -> None:
    # The standard library's example, as two programs: the second attaches, changes the
    # array and closes without deleting it first; the first sees the change.
    run("""
        import subprocess
        a = np.array([1, 1, 2, 3, 5, 8])
        shm = mapshare.Segment.create(NAME, a.nbytes)
        b = np.ndarray(a.shape, dtype=a.dtype, buffer=shm.buf)
        b[:] = a[:]
        other = '''
        import mapshare, numpy as np, sys
        existing = mapshare.Segment.open(sys.argv[1])
        c = np.ndarray((6,), dtype=np.int64, buffer=existing.buf)
        c[-1] = 888
        existing.close()
        print(int(c[-1]))
        '''
        out = subprocess.run([sys.executable, "-c", other.replace("\\n        ", "\\n"), NAME],
                             capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout == "888\\n", (out.returncode, out.stderr)
        assert b[-1] == 888
        shm.close()
        shm.unlink()
        assert b.sum() == 900
        print("ok")
    """, name)


def test_receive_array_view_cannot_be_made_writable(name: str) -> None:
    run("""
        ch = mapshare.Channel.create(NAME, 1 << 16)
        ch.send_array(np.arange(10))
        with ch.receive_array_view() as a:
            try:
                a.flags.writeable = True
            except ValueError:
                pass
            else:
                raise AssertionError("a received array became writable")
            del a
        ch.close()
        print("ok")
    """, name)
