"""The public API is exactly ``mapshare.__all__`` (and ``mapshare.testing.__all__``):
every name there exists, is documented (a class: its public methods, properties and
dataclass fields too) and appears in docs/api.md; nothing public is left out of it, and
every mapshare type a public call hands to a user is exported, so a user can name it in
an annotation or an ``isinstance``."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import mapshare
import mapshare.testing
from mapshare import _core

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "gen_api_docs.py"
PAGE = ROOT / "docs" / "api.md"

# Types a public call returns that are not exported yet (the loan and receive_view window
# of _core, collect()'s Reclaimed): exporting them is the work of the typed-factories
# change.  The test fails both when a type is missing from here and when one here is
# exported, so this set only ever shrinks.
PENDING: set[str] = set()


def _tool() -> Any:
    if not TOOL.exists():
        pytest.skip("run from a source checkout (tools/gen_api_docs.py)")
    spec = importlib.util.spec_from_file_location("gen_api_docs", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def public_api() -> list[tuple[str, Any]]:
    """(qualified name, object) of every exported name."""
    out = [(f"mapshare.{n}", getattr(mapshare, n, None)) for n in mapshare.__all__]
    out += [
        (f"mapshare.testing.{n}", getattr(mapshare.testing, n, None))
        for n in mapshare.testing.__all__
    ]
    return out


def test_every_exported_name_exists() -> None:
    missing = [q for q, obj in public_api() if obj is None]
    assert not missing, f"in __all__ but not defined: {missing}"
    assert len(set(mapshare.__all__)) == len(mapshare.__all__), "a name twice in __all__"


def test_every_exported_name_is_documented() -> None:
    tool = _tool()
    undocumented = [m for _, obj in public_api() for m in tool.missing_docs(obj)]
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_every_exported_name_is_on_the_api_page() -> None:
    if not PAGE.exists():
        pytest.skip("run from a source checkout (docs/api.md)")
    headings = set(re.findall(r"^### (\S+)$", PAGE.read_text(encoding="utf-8"), re.M))
    absent = [
        q for q, _ in public_api() if q.removeprefix("mapshare.") not in headings
    ]
    assert not absent, (
        f"exported but not in docs/api.md: {absent}; run `python tools/gen_api_docs.py`"
    )


def _unexported_public(module: types.ModuleType, names: list[str]) -> list[str]:
    out = []
    for name in dir(module):
        if name.startswith("_") or name in names:
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            continue  # a submodule (mapshare.testing) or an imported module
        if getattr(value, "__module__", module.__name__).split(".")[0] != "mapshare":
            continue  # imported from elsewhere for the module's own use (e.g. Iterable)
        out.append(name)
    return out


def test_nothing_public_is_left_out_of_all() -> None:
    assert _unexported_public(mapshare, mapshare.__all__) == []
    assert _unexported_public(mapshare.testing, mapshare.testing.__all__) == []


# ---- the types users receive -------------------------------------------------------------


def _exported_classes() -> set[type]:
    return {obj for _, obj in public_api() if inspect.isclass(obj)}


def _names_in(annotation: str) -> list[str]:
    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*", annotation)


def _resolve(name: str, namespace: dict[str, Any]) -> Any:
    return namespace.get(name, getattr(_core, name, None))


def _received_through(qualname: str, obj: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(where, annotation text, namespace to resolve it in) for what obj hands back: a
    function's return, a class's public methods' returns, property types and dataclass
    field types (C methods: their return type in _core.pyi)."""
    tool = _tool()
    out: list[tuple[str, str, dict[str, Any]]] = []

    def of_callable(where: str, fn: Any) -> None:
        fn = inspect.unwrap(fn)
        ann = getattr(fn, "__annotations__", {}).get("return")
        if isinstance(ann, str):
            out.append((where, ann, getattr(fn, "__globals__", {})))
        elif ann is not None:
            out.append((where, getattr(ann, "__name__", str(ann)), {}))
        else:
            stub_ret = tool.stub_hints(fn)[1]
            if stub_ret:
                out.append((where, stub_ret, vars(_core)))

    if not inspect.isclass(obj):
        of_callable(qualname, obj)
        return out
    module_ns = vars(sys.modules[obj.__module__])
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            out.append((f"{qualname}.{f.name}", str(f.type), module_ns))
    for name in tool.public_member_names(obj):
        raw = tool._raw(obj, name)
        where = f"{qualname}.{name}"
        if isinstance(raw, property) and raw.fget is not None:
            of_callable(where, raw.fget)
        elif isinstance(raw, (classmethod, staticmethod)):
            of_callable(where, raw.__func__)
        elif inspect.isgetsetdescriptor(raw) or inspect.ismemberdescriptor(raw):
            stub_ret = tool.stub_hints(raw)[1]
            if stub_ret:
                out.append((where, stub_ret, vars(_core)))
        elif callable(raw):
            of_callable(where, raw)
    return out


def unexported_received_types() -> dict[str, list[str]]:
    """Type name -> where it reaches a user, for mapshare classes a public call returns
    (per the annotations) that are not exported."""
    exported = _exported_classes()
    found: dict[str, list[str]] = {}
    for qualname, obj in public_api():
        for where, annotation, namespace in _received_through(qualname, obj):
            for name in _names_in(annotation):
                value = _resolve(name, namespace)
                if (
                    inspect.isclass(value)
                    and value.__module__.split(".")[0] == "mapshare"
                    and value not in exported
                    and not any(issubclass(e, value) for e in exported)  # a private base
                ):
                    found.setdefault(value.__name__, []).append(where)
    return found


def test_types_users_receive_are_exported() -> None:
    found = unexported_received_types()
    missing = {k: v for k, v in found.items() if k not in PENDING}
    assert not missing, f"returned by public calls but not exported from mapshare: {missing}"
    done = PENDING - set(found)
    assert not done, f"exported now: remove {sorted(done)} from PENDING in this file"


def test_types_received_at_run_time_are_exported(name: str) -> None:
    """The same from real calls, for what annotations might not say."""
    exported = _exported_classes()
    received: dict[str, Any] = {}
    with mapshare.Channel.create(name, 4096) as ch:
        try:
            received["Channel.statistics()"] = ch.statistics()
            received["Channel.segment"] = ch.segment
            received["Segment.info()"] = info = ch.segment.info()
            received["SegmentInfo.attached[0]"] = info.attached[0]
            received["SegmentInfo.lock"] = info.lock
            window = received["Channel.loan()"] = ch.loan(8)
            with window as buf:
                buf[:] = b"12345678"
            view = received["Channel.receive_view()"] = ch.receive_view(0)
            with view:
                pass
            received["Segment.lock()"] = lock = ch.segment.lock()
            received["Lock.state()"] = lock.state()
            received["segments()[i]"] = next(
                s for s in mapshare.segments() if s.name == name
            )
            received["collect()"] = mapshare.collect(dry_run=True)
        finally:
            ch.unlink()
    values = [
        (where, item)
        for where, value in received.items()
        for item in (value if isinstance(value, list) else [value])
        if item is not None
    ]
    wrong = {
        where: type(value).__name__
        for where, value in values
        # a private subclass of an exported class is fine: the user names the class
        if not any(isinstance(value, cls) for cls in exported)
        and type(value).__name__ not in PENDING
    }
    assert not wrong, f"public calls returned unexported types: {wrong}"
