"""SharedArray across real processes: every dtype round-trips, forged headers from
another process are refused (never a crash), a full tmpfs fails at create, an opener
racing create never sees a half-built array, a file-backed array is a .npy file any
program reads and reopens after every process exited, workers reattach by name, the
lock reports a dead owner and publish wakes waiters."""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import _array_children as children
import numpy as np
import pytest

import mapshare
from mapshare import SharedArray
from support import LINUX, ROOT, exists, mp_context, poke, stop

DATA = 69632  # MS_HEADER_SIZE: where the user area (the .npy image) starts
TIMEOUT = 60

DTYPES: list[tuple[str, Any, Any, str]] = [
    # (id, shape, dtype, order)
    ("i1", (5,), np.int8, "C"),
    ("u8-native", (3, 2), np.uint64, "C"),
    ("i4-swapped", (4,), np.dtype("i4").newbyteorder(), "C"),
    ("f8-big", (2, 3), ">f8", "C"),
    ("f2", (7,), "<f2", "C"),
    ("f4-fortran", (3, 4), "<f4", "F"),
    ("c16", (3,), np.complex128, "C"),
    ("c8-big", (3,), ">c8", "C"),
    ("bool", (9,), np.bool_, "C"),
    ("datetime-ms", (4,), "M8[ms]", "C"),
    ("datetime-big-D", (4,), ">M8[D]", "C"),
    ("timedelta-us", (4,), "m8[us]", "C"),
    ("U7", (3,), "U7", "C"),
    ("U3-big", (2,), ">U3", "C"),
    ("S5", (4,), "S5", "C"),
    ("V6", (2,), "V6", "C"),
    ("structured", (3,), [("x", "<i4"), ("y", ">f8"), ("name", "S4")], "C"),
    ("structured-aligned", (3,),
     np.dtype([("a", "u1"), ("b", "<i8"), ("c", "u2")], align=True), "C"),
    ("structured-offsets", (2,), np.dtype({"names": ["p", "q"], "formats": ["<i2", ">f4"],
                                           "offsets": [4, 12], "itemsize": 20}), "C"),
    ("nested", (2, 2), [("pos", [("x", "<f4"), ("y", "<f4")]), ("t", "M8[ns]"),
                        ("inner", [("deep", [("v", ">i2", (2,))])])], "C"),
    ("subarray-fields", (2,), [("m", "<f8", (2, 3)), ("tag", "U2", (2,))], "C"),
    ("titles", (2,), np.dtype({"names": ["a"], "formats": ["<i4"], "titles": ["Alpha"]}), "C"),
    ("structured-fortran", (2, 3), [("a", "<i2"), ("b", ">f8")], "F"),
    ("zero-size", (0, 4), "<f8", "C"),
    ("scalar", (), "<i8", "C"),
]


def fill_for(arr: np.ndarray) -> None:
    c = arr.T if arr.flags.f_contiguous and not arr.flags.c_contiguous else arr
    flat = c.reshape(-1).view(np.uint8)  # a view: the array is contiguous
    flat[:] = (np.arange(flat.size) * 7 + 3) % 251
    if arr.dtype.kind in "MmbU" or arr.dtype.names:
        # keep values valid for their type (bools 0/1, code points, NaT-free times)
        arr[...] = np.zeros((), arr.dtype)
        if arr.dtype.kind == "b":
            arr.reshape(-1)[::2] = True
        elif arr.dtype.kind in "Mm":
            arr.reshape(-1)[:] = np.arange(arr.size).astype(arr.dtype.base.newbyteorder("="))
        elif arr.dtype.kind == "U":
            arr.reshape(-1)[:] = [f"é{i}"[: 3] for i in range(arr.size)]


# spawn runs the whole table; fork a sample of it
ROUND_TRIPS = [pytest.param("spawn", *d, id=f"{d[0]}-spawn") for d in DTYPES] + [
    pytest.param("fork", *d, id=f"{d[0]}-fork") for d in DTYPES
    if d[0] in ("structured-aligned", "nested", "f4-fortran")
]


@pytest.mark.parametrize("method,ident,shape,dtype,order", ROUND_TRIPS)
def test_dtype_round_trips_across_processes(
    name: str, method: str, ident: str, shape: Any, dtype: Any, order: str
) -> None:
    dt = np.dtype(dtype)
    with SharedArray.create(name, shape, dt, order=order) as a:
        fill_for(a.array)
        ctx = mp_context(method)
        parent, child = ctx.Pipe()
        p = ctx.Process(target=children.describe, args=(name, child))
        p.start()
        try:
            assert parent.poll(TIMEOUT)
            got = parent.recv()
        finally:
            stop([p])
        assert got[0] == "ok", got
        _, descr, dstr, gshape, fortran, digest, _aligned = got
        assert descr == np.lib.format.dtype_to_descr(dt)
        assert np.lib.format.descr_to_dtype(descr) == dt
        assert dstr == dt.str  # byte order, units, sizes
        assert gshape == tuple(shape)
        assert fortran == (order == "F" and len(shape) > 1 and a.array.size > 1)
        assert digest == children.digest(a.array)


FORGED = [
    # (id, header text, what the opener must report)
    ("shape-too-big", b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000000,), }"),
    ("shape-overflow", b"{'descr': '<f8', 'fortran_order': False, "
                       b"'shape': (4294967296, 4294967296, 16), }"),
    ("ndim-65", b"{'descr': '<f8', 'fortran_order': False, 'shape': (" + b"1, " * 65 + b"), }"),
    ("negative", b"{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }"),
    ("descr-object", b"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"),
    ("descr-object-field", b"{'descr': [('a', '|O')], 'fortran_order': False, 'shape': (2,), }"),
    ("descr-eval", b"{'descr': __import__('os').system('true'), 'fortran_order': False, "
                   b"'shape': (2,), }"),
    ("descr-unknown", b"{'descr': '<q99', 'fortran_order': False, 'shape': (2,), }"),
    ("descr-huge-itemsize", b"{'descr': '|V99999999', 'fortran_order': False, 'shape': (2,), }"),
    ("subarray-huge", b"{'descr': [('a', '<f8', (100000, 100000))], 'fortran_order': False, "
                      b"'shape': (1,), }"),
    ("offsets-beyond", b"{'descr': [('a', '<f8'), ('', '|V99999999')], "
                       b"'fortran_order': False, 'shape': (3,), }"),
    ("deep", b"{'descr': " + b"[('a', " * 33 + b"'<i4'" + b")]" * 33
             + b", 'fortran_order': False, 'shape': (1,), }"),
]


@pytest.mark.parametrize("ident,text", FORGED, ids=[f[0] for f in FORGED])
def test_forged_header_from_another_process_is_layout_error(
    name: str, ident: str, text: bytes
) -> None:
    with SharedArray.create(name, (6,), "<f8") as a:
        a.array[:] = 1.0
        room = 128 - 10  # the header numpy wrote for this array: keep the data offset
        if len(text) + 1 <= room:
            body = text.ljust(room - 1) + b"\n"
            pre = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body))
        else:
            body = text + b"\n"
            pre = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body))
        # the forger is another process, writing through the file system (Windows:
        # through the named section), with no mapshare mapping: support.poke
        code = ("import sys\nsys.path.insert(0, sys.argv[1])\nfrom support import poke\n"
                "poke(sys.argv[2], int(sys.argv[4]), bytes.fromhex(sys.argv[3]))\n")
        subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parents[1]),
                        name, (pre + body).hex(), str(DATA)], check=True, timeout=TIMEOUT)
        ctx = mp_context("spawn")
        parent, child = ctx.Pipe()
        p = ctx.Process(target=children.open_forged, args=(name, child))
        p.start()
        try:
            assert parent.poll(TIMEOUT)
            got = parent.recv()
            p.join(TIMEOUT)
        finally:
            stop([p])
        assert p.exitcode == 0  # never a crash
        assert got[:2] == ("error", "LayoutError"), got


def test_forged_magic_and_length_from_another_process(name: str) -> None:
    with SharedArray.create(name, (6,), "<f8") as a:
        good = a._data._core.read(16, 0)
        for off, data in ((0, b"\x93NUMPZ"), (8, struct.pack("<H", 0xFFFF)), (6, b"\x07")):
            poke(name, DATA + off, data)
            with pytest.raises(mapshare.LayoutError):
                SharedArray.open(name)
            poke(name, DATA, good)
        SharedArray.open(name).close()


def test_opener_racing_create_never_sees_a_half_built_array(name: str) -> None:
    n = 4 << 20  # 32 MiB of float64: filling takes long enough to race
    ctx = mp_context("spawn")
    procs, pipes = [], []
    for _ in range(2):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=children.race_open, args=(name, 3.0, n, child))
        p.start()
        procs.append(p)
        pipes.append(parent)
    try:
        with SharedArray.create(name, n, "<f8", fill=3.0):
            for parent in pipes:
                assert parent.poll(TIMEOUT)
                got = parent.recv()
                assert got == ("ok", (n,), n, n), got
            for p in procs:  # let them close (a killed opener would keep the name)
                p.join(TIMEOUT)
                assert p.exitcode == 0
    finally:
        stop(procs)


def test_unready_array_is_refused_after_init_timeout(name: str) -> None:
    with SharedArray.create(name, 3) as a:
        # forge 'ready' back to 0, as if the creator died before finishing
        poke(name, 1024 + 4, struct.pack("<I", 0))
        with pytest.raises(mapshare.LayoutError, match="still being built"):
            SharedArray.open(name, init_timeout=0.1)
        del a


needs_ns = pytest.mark.skipif(
    not (LINUX and ROOT) or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to mount a small tmpfs in a private namespace",
)

FULL = """
import json, os, mapshare
res = {}
for what, kw in (("shm", {}), ("file", {"path": "/mnt/small/a.npy"})):
    try:
        mapshare.SharedArray.create("big-" + what, (4 << 20,), "<f8", **kw)
        res[what] = "created"
    except mapshare.NoSpaceError as e:
        res[what] = ["NoSpaceError", os.path.exists("/dev/shm/mapshare.big-" + what),
                     os.listdir("/mnt/small")]
a = mapshare.SharedArray.create("small", (1000,), "<f8", fill=1.0)
res["small"] = float(a.array.sum())
print(json.dumps(res))
"""


@needs_ns
def test_full_tmpfs_is_no_space_error_at_create(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(FULL)
    sh = ("set -e\nmount -t tmpfs -o size=8m tmpfs /dev/shm\nmkdir -p /mnt/small\n"
          "mount -t tmpfs -o size=8m tmpfs /mnt/small\n"
          f"exec {sys.executable} {script}\n")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", sh],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-3000:])  # no SIGBUS
    import json

    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["shm"] == ["NoSpaceError", False, []], res
    assert res["file"] == ["NoSpaceError", False, []], res
    assert res["small"] == 1000.0


NPY_READER = """
import sys, numpy as np
a = np.load(sys.argv[1], mmap_mode="r")
assert "mapshare" not in sys.modules
print(a.dtype.str, a.shape, float(a.sum()), a.flags.f_contiguous)
"""


def test_file_backed_array_is_a_npy_file_and_reopens_after_all_exited(
    name: str, tmp_path: Path
) -> None:
    path = tmp_path / "weights.npy"
    ctx = mp_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=children.create_file_backed, args=(name, str(path), child))
    p.start()
    try:
        assert parent.poll(TIMEOUT)
        assert parent.recv() == "done"
        p.join(TIMEOUT)
    finally:
        stop([p])
    assert p.exitcode == 0
    assert not exists(name)  # every process exited: the (shared) name went
    # a program that never heard of mapshare
    r = subprocess.run([sys.executable, "-c", NPY_READER, str(path)], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [">f4", "(4,", "5)", "190.0", "False"]
    assert (np.load(path) == np.arange(20).reshape(4, 5)).all()
    # reopen by path: the control block is made again, the data is the file's
    with SharedArray.open(path=path, access="rw") as a:
        assert a.dtype == np.dtype(">f4") and a.array.sum() == 190
        a.array[0, 0] = 100
        a.flush()
        with SharedArray.open(path=path) as b:  # same control block: same version
            assert b.name == a.name
            a.publish()
            assert b.version == 1
    assert np.load(path, mmap_mode="r")[0, 0] == 100
    assert not exists(name)


def test_file_backed_open_by_name_while_alive(name: str, tmp_path: Path) -> None:
    path = tmp_path / "f.npy"
    with SharedArray.from_array(name, np.arange(6.0), path=path) as a:
        with SharedArray.open(name) as b:
            assert b.path == str(path) and b.array.sum() == 15
            assert pickle.loads(pickle.dumps(b)).array.sum() == 15
        a.array[:] = 2
    assert np.load(path).sum() == 12
    with pytest.raises(mapshare.SegmentExistsError), SharedArray.create(name, 3):
        SharedArray.create(name + "2", 3, path=path)  # the file exists
    os.unlink(path)


OPEN_BY_NAME = textwrap.dedent("""
    import sys, mapshare
    name, path = sys.argv[1], sys.argv[2]
    try:
        if path:
            a = mapshare.SharedArray.open(name, path=path)
        else:
            a = mapshare.SharedArray.open(name)
        print("opened", a.shape, a.array.dtype)
    except mapshare.MapshareError as e:
        print(type(e).__name__, "replaced" in str(e), e)
""")


@pytest.mark.posix_only("Windows refuses to replace or truncate a file another handle maps")
@pytest.mark.parametrize("change", ["replace", "replace-short", "truncate-data",
                                    "truncate-header", "truncate-empty"])
def test_file_replaced_or_truncated_before_another_process_opens_by_name(
    name: str, tmp_path: Path, change: str
) -> None:
    # never SIGBUS, never the other file's array: a clear LayoutError in the opener
    path = tmp_path / "f.npy"
    with SharedArray.create(name, (1000, 100), "<f8", path=path):
        # (the creator's own .array is not touched again: truncating a file under a
        # live mapping makes touching it fault, the documented limit)
        if change.startswith("replace"):
            os.unlink(path)
            if change == "replace":
                np.save(path, np.arange(10))  # a valid .npy of another array
            else:
                path.write_bytes(b"\0" * 100)
        else:
            size = {"truncate-data": 4096, "truncate-header": 100, "truncate-empty": 0}[change]
            os.truncate(path, size)
        r = subprocess.run([sys.executable, "-c", OPEN_BY_NAME, name, ""],
                           capture_output=True, text=True, timeout=TIMEOUT)
        info = mapshare_cli("info", name)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[0] == "LayoutError", r.stdout
    # inspection says so too, rather than describing the other file's array
    assert "array:       unreadable" in info.stdout, info.stdout + info.stderr
    if change == "replace":
        assert words[1] == "True", r.stdout  # the message says the file was replaced
        assert "was replaced" in info.stdout


@pytest.mark.posix_only("Windows refuses to replace a file another handle maps")
def test_file_replaced_under_a_live_companion_is_refused_by_path(
    name: str, tmp_path: Path
) -> None:
    path = tmp_path / "f.npy"
    with SharedArray.create(name, (10,), "<i8", path=path):
        r = subprocess.run([sys.executable, "-c", OPEN_BY_NAME, name, str(path)],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert r.stdout.split()[:3] == ["opened", "(10,)", "int64"], r.stdout + r.stderr
        os.unlink(path)
        np.save(path, np.arange(10.0))
        r = subprocess.run([sys.executable, "-c", OPEN_BY_NAME, name, str(path)],
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["LayoutError", "True"], r.stdout


def test_non_npy_file_is_layout_error(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", 118)
                     + b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000,), }".ljust(117)
                     + b"\n" + b"\0" * 64)
    with pytest.raises(mapshare.LayoutError):
        SharedArray.open(path=path)


# Under Wine this needs a prefix that reports Windows 8 or later (tools/wine/setup.sh sets
# win10): with Wine 8's default "Windows 7" every ProcessPoolExecutor result times out,
# mapshare or not -- CPython's pipe wait assumes Windows 7 pipe semantics that Wine does
# not have (tools/wine/pipe_repro.py).
def test_process_pool_workers_reattach_by_name(name: str) -> None:
    with SharedArray.create(name, (4, 1000), "<i8", fill=1) as a:
        assert len(pickle.dumps(a)) < 200
        ctx = mp_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            futures = [pool.submit(children.worker_add, a, row) for row in range(4)]
            res = [f.result(TIMEOUT) for f in futures]
        assert all(r[1] for r in res)
        assert [int(a.array[i].sum()) for i in range(4)] == [1000 * (1 + i) for i in range(4)]


def test_lock_owner_died(name: str) -> None:
    with SharedArray.create(name, 3) as a:
        ctx = mp_context("spawn")
        parent, child = ctx.Pipe()
        p = ctx.Process(target=children.hold_lock, args=(name, child))
        p.start()
        try:
            assert parent.poll(TIMEOUT) and parent.recv() == "held"
            p.kill()  # SIGKILL (Windows: TerminateProcess) while it holds the lock
            p.join(TIMEOUT)
        finally:
            stop([p])
        lock = a.lock()
        with pytest.raises(mapshare.OwnerDiedError):
            lock.acquire(timeout=10)
        lock.release()


def test_publish_wakes_a_waiter_in_another_process(name: str) -> None:
    with SharedArray.create(name, 3) as a:
        ctx = mp_context("spawn")
        parent, child = ctx.Pipe()
        p = ctx.Process(target=children.wait_version, args=(name, 0, child))
        p.start()
        try:
            assert parent.poll(TIMEOUT) and parent.recv() == "waiting"
            with a.lock():
                a.array[0] = 42
            assert a.publish() == 1
            assert parent.poll(TIMEOUT)
            assert parent.recv() == ("ok", 1, 42.0)
        finally:
            stop([p])


def test_read_only_opener_cannot_write_in_another_process(name: str) -> None:
    code = textwrap.dedent("""
        import sys, mapshare
        a = mapshare.SharedArray.open(sys.argv[1])
        try:
            a.array[0] = 5
        except ValueError as e:
            print("ValueError", a.array.flags.writeable)
    """)
    with SharedArray.create(name, 3):
        r = subprocess.run([sys.executable, "-c", code, name], capture_output=True,
                           text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ValueError", "False"]


@pytest.mark.parametrize("racers", [2, 6])
def test_open_or_create_racing_processes_end_up_on_one_array(name: str, racers: int) -> None:
    # every racer must have landed on the same array, which then holds every mark (the
    # racers keep it open until the parent has looked)
    ctx = mp_context("spawn")
    go, done = ctx.Event(), ctx.Event()
    pipes = [ctx.Pipe() for _ in range(racers)]
    procs = [ctx.Process(target=children.open_or_create_and_mark,
                         args=(name, i, racers, go, done, pipes[i][1]))
             for i in range(racers)]
    try:
        for p in procs:
            p.start()
        go.set()
        got = [parent.recv() if parent.poll(TIMEOUT) else ("timeout",) for parent, _ in pipes]
        assert got == [("ok", "rw")] * racers
        with SharedArray.open(name) as a:
            assert a.array.tolist() == [1] * racers
        done.set()
        for p in procs:
            p.join(TIMEOUT)
            assert p.exitcode == 0
    finally:
        stop(procs)


def test_open_or_create_refuses_another_dtype_shape_or_order(name: str) -> None:
    code = textwrap.dedent("""
        import sys, numpy as np, mapshare
        name = sys.argv[1]
        for shape, dtype, order in [((2, 3), ">f4", "C"), ((3, 2), "<f4", "C"),
                                    ((2, 3), "<f4", "F"), ((2, 3), [("a", "<f4")], "C")]:
            try:
                mapshare.SharedArray.open_or_create(name, shape, dtype, order=order)
                print("opened")
            except mapshare.LayoutError as e:
                print("LayoutError", "asked for" in str(e))
        with mapshare.SharedArray.open_or_create(name, (2, 3), "<f4", fill=9) as a:
            print(a.access, float(a.array.sum()))
    """)
    with SharedArray.create(name, (2, 3), "<f4", fill=1.5):
        r = subprocess.run([sys.executable, "-c", code, name], capture_output=True,
                           text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    # the existing array is opened as it is: its creator's fill, not the opener's
    assert r.stdout.split("\n")[:-1] == ["LayoutError True"] * 4 + ["rw 9.0"]


def test_read_only_handle_may_lock_but_not_publish(name: str) -> None:
    code = textwrap.dedent("""
        import sys, mapshare
        for access in ("r", "copy", "rw"):
            with mapshare.SharedArray.open(sys.argv[1], access=access) as a:
                with a.lock():
                    held = a.lock().locked()
                try:
                    print(access, held, "published", a.publish())
                except mapshare.PermissionDeniedError as e:
                    print(access, held, "PermissionDeniedError", a.version)
    """)
    with SharedArray.create(name, 3) as a:
        r = subprocess.run([sys.executable, "-c", code, name], capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n")[:-1] == [
            "r True PermissionDeniedError 0", "copy True PermissionDeniedError 0",
            "rw True published 1",
        ]
        assert a.version == 1


def mapshare_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mapshare", *args], capture_output=True,
                          text=True, timeout=TIMEOUT)


def test_cli_ls_and_info_show_dtype_shape_and_version(name: str, tmp_path: Path) -> None:
    import json

    path = tmp_path / "rec.npy"
    with SharedArray.create(name, (3, 4), ">f4", order="F") as a, \
            SharedArray.create(name + "r", 5, [("a", "<i4"), ("t", "M8[ms]")], path=path):
        a.publish()
        ls = mapshare_cli("ls")
        assert ls.returncode == 0, ls.stderr
        line = next(row for row in ls.stdout.splitlines() if row.startswith(name + " "))
        assert "array >f4 (3, 4)" in line
        info = mapshare_cli("info", name)
        assert info.returncode == 0, info.stderr
        assert "dtype:       >f4" in info.stdout
        assert "shape:       (3, 4), order F, 48 bytes" in info.stdout
        assert "version:     1" in info.stdout
        js = json.loads(mapshare_cli("info", "--json", name + "r").stdout)
        assert js["kind"] == "array"
        assert js["extra"]["shape"] == [5] and js["extra"]["file"] == str(path)
        assert js["extra"]["descr"] == "[('a', '<i4'), ('t', '<M8[ms]')]"
        # a forged header is reported, never a crash of the tool
        poke(name, DATA + 10, b"{'descr': '|O'")
        info = mapshare_cli("info", name)
        assert info.returncode == 0, info.stderr
        assert "array:       unreadable" in info.stdout
