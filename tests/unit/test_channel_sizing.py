"""docs/channel.md "Sizing a channel for arrays": the record size and capacity formulas
(k frames of capacity hold k - 1 arrays, which the page once did not say)."""

from __future__ import annotations

from typing import Any

import pytest

import mapshare

np = pytest.importorskip("numpy")


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def record(a: Any) -> int:
    descr = repr(np.lib.format.dtype_to_descr(a.dtype))
    return 8 + _pad8(16 + len(descr) + 8 * a.ndim) + _pad8(a.nbytes)


def _fill(ch: mapshare.Channel, a: Any) -> int:
    k = 0
    while True:
        try:
            ch.send_array(a, timeout=0)
        except (mapshare.WaitTimeout, mapshare.ChannelFull, mapshare.MessageTooLargeError):
            return k
        k += 1


@pytest.mark.parametrize("shape,dtype", [((100, 100), "<f8"), ((999,), "<i2"),
                                         ((3, 4, 5), ">f4"), ((7,), "u1")])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_array_capacity_formula(names: Any, shape: tuple[int, ...], dtype: str, k: int) -> None:
    a = np.zeros(shape, dtype)
    r = record(a)
    if np.dtype(dtype).descr[0][1] in ("<f8", "<i2"):  # the docs' worked figures
        assert r == _pad8(a.nbytes) + {1: 40, 2: 48}[a.ndim]
    for shift in range(0, 64, 7):  # the ring's position before the arrays come
        # k * nbytes: never k
        if k * a.nbytes >= 64:
            with mapshare.Channel.create(names(), k * a.nbytes) as ch:
                assert _fill(ch, a) == k - 1
        # (k + 1) * R - 8: always k, wherever the write position is
        with mapshare.Channel.create(names(), (k + 1) * r - 8) as ch:
            for _ in range(shift):
                ch.send(b"12345678")
                ch.receive()
            assert _fill(ch, a) >= k
