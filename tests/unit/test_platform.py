"""Where the OSes differ (docs/platforms.md): listing the objects of the namespace,
'persistent' segments (Windows: only with a backing file), and ``mapshare rm`` on
Windows, where a name cannot be removed while a handle holds it."""

from __future__ import annotations

import pytest

import mapshare
from mapshare import _cli, _core, _naming
from mapshare.testing import shm_entries
from support import WINDOWS

TIMEOUT = 60.0


def test_list_objects_names_exactly_the_live_objects(names: object) -> None:
    a, b = names(), names()  # type: ignore[operator]
    osn_a, osn_b = _naming.os_name(a), _naming.os_name(b)
    assert not {osn_a, osn_b} & set(_core.list_objects())
    with mapshare.Segment.create(a, 64), mapshare.Channel.create(b, 4096):
        listed = _core.list_objects()
        assert listed == sorted(listed)
        assert {osn_a, osn_b} <= set(listed)
        assert all(n.startswith("/mapshare.") and len(n) > len("/mapshare.") for n in listed)
        assert {osn_a, osn_b} <= shm_entries()
        kinds = {i.name: i.kind for i in mapshare.segments() if i.name in (a, b)}
        assert kinds == {a: "segment", b: "channel"}
    left = set(_core.list_objects())
    assert osn_a not in left and osn_b not in left


@pytest.mark.skipif(not WINDOWS, reason="Windows policy ('persistent' works in /dev/shm)")
def test_persistent_in_the_paging_file_is_refused_on_windows(name: str) -> None:
    for make in (
        lambda: mapshare.Segment.create(name, 64, lifetime="persistent"),
        lambda: mapshare.Lock.create(name, lifetime="persistent"),
        lambda: mapshare.Channel.create(name, 4096, lifetime="persistent"),
    ):
        with pytest.raises(mapshare.UnsupportedError) as err:
            make()
        assert isinstance(err.value, NotImplementedError)
        assert isinstance(err.value, mapshare.MapshareError)
        assert "path=" in str(err.value)
        assert _naming.os_name(name) not in shm_entries()  # nothing was made


@pytest.mark.skipif(not WINDOWS, reason="Windows policy (POSIX rm unlinks the name)")
def test_rm_on_windows_refuses_new_opens_and_the_name_goes_with_the_last_handle(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seg = mapshare.Segment.create(name, 64)
    try:
        assert _cli.main(["rm", name]) == 0
        assert f"removed {name}" in capsys.readouterr().out
        with pytest.raises(mapshare.SegmentNotFoundError):
            mapshare.Segment.open(name, init_timeout=0.1)
        seg.write(b"still mapped")  # removing does not unmap the holder
        assert seg.read(12) == b"still mapped"
        assert _cli.main(["rm", name]) == _cli.EXIT_NOT_FOUND  # already removed
        assert name in capsys.readouterr().err
    finally:
        seg.close()
    assert _naming.os_name(name) not in shm_entries()
    assert _cli.main(["rm", name]) == _cli.EXIT_NOT_FOUND
