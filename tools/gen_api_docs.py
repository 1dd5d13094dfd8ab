"""Generate docs/api.md, the API reference, from the docstrings of the installed package.

    python tools/gen_api_docs.py            # rewrite docs/api.md
    python tools/gen_api_docs.py --check    # exit 1 if docs/api.md is out of date

Every name of ``mapshare.__all__`` and ``mapshare.testing.__all__`` gets a section:
its signature (from ``inspect``), its docstring, and for a class its factories,
attributes and methods (the public ones, inherited ones included, the C methods of
``_core`` too) and, for a dataclass, its fields with their docstrings (read from the
source, since attribute docstrings do not exist at run time).  Names are grouped by
concept; a name this script does not know yet goes by the module that defines it, or into
"Other names", so that adding a class never needs an edit here to be documented.  The
output depends only on the code: no addresses, dates or paths, in the same order every
run.  docs/api.md is never edited by hand: tests/unit/test_api_docs.py fails when it is
not what this script writes.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import importlib
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "api.md"
COMMAND = "python tools/gen_api_docs.py"

# (title, introduction, names in the order a reader meets them).  A name not listed goes
# by the module that defines it (MODULE_GROUPS), exceptions always to "Errors".
GROUPS: list[tuple[str, str, list[str]]] = [
    (
        "Segments",
        "Named shared memory and memory-mapped files ([segment.md](segment.md)).",
        ["Segment"],
    ),
    (
        "Synchronization",
        "Robust locks, events and semaphores, named or placed inside a segment "
        "([sync.md](sync.md)).",
        ["Lock", "LockState", "Event", "Semaphore"],
    ),
    (
        "Channels",
        "Bounded multi-producer multi-consumer message queues ([channel.md](channel.md); "
        "the message formats: [design/wire-formats.md](design/wire-formats.md)).",
        ["Channel", "ChannelStatistics"],
    ),
    (
        "Topics",
        "Broadcast publish/subscribe with sequence numbers, history and counted loss "
        "([topic.md](topic.md)).",
        ["Topic", "Subscriber", "TopicStatistics", "SubscriberStatistics"],
    ),
    (
        "Bridge",
        "Topics and channels across hosts over Eclipse Zenoh: `mapshare bridge` "
        "([bridge.md](bridge.md); needs `pip install \"mapshare[bridge]\"`).",
        ["Bridge", "BridgeStatistics", "TopicMappingStatistics", "RemoteHostStatistics",
         "ChannelMappingStatistics"],
    ),
    (
        "Inspection and cleanup",
        "What exists, who is attached, and removing what dead processes left behind "
        "([cli.md](cli.md): `mapshare ls`, `info`, `gc`).",
        ["segments", "SegmentInfo", "ProcessInfo", "collect", "Reclaimed"],
    ),
    (
        "Waiting on several objects",
        "One sleep on several channels, subscribers, events, semaphores and segments "
        "([wait.md](wait.md)).",
        ["wait", "wait_async"],
    ),
    (
        "Errors",
        "One root, `MapshareError`; leaves also subclass the builtin exception a caller "
        "would already catch.  Conditions met in normal flow carry no suffix "
        "(`ChannelFull`, `ChannelEmpty`, `EndOfChannel`); failures end in `Error`.",
        [],
    ),
]
OTHER = ("Other names", "Exported names not yet placed in a group of tools/gen_api_docs.py.")
TESTING = (
    "Testing (`mapshare.testing`)",
    "Helpers for the tests of code that uses mapshare: unique names and leak checks.",
)
# A module (the last part of its dotted name, without underscores) -> a group title, for
# names that GROUPS does not list.
MODULE_GROUPS = {
    "segment": "Segments",
    "link": "Segments",
    "sync": "Synchronization",
    "channel": "Channels",
    "topic": "Topics",
    "bridge": "Bridge",
    "inspect": "Inspection and cleanup",
    "gc": "Inspection and cleanup",
    "errors": "Errors",
    "wait": "Waiting on several objects",
}
# Dunder methods worth documenting (they define how a user iterates or indexes).
DUNDERS = ("__iter__", "__aiter__", "__len__", "__getitem__", "__contains__")


# ---- reading the code --------------------------------------------------------------------


def _is_ours(obj: Any) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] == "mapshare"


def docstring(obj: Any) -> str:
    """The cleaned docstring of obj, or '' (never the inherited one of a builtin)."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        try:  # the docstring dataclasses makes up for a class without one
            made_up = obj.__name__ + str(inspect.signature(obj)).replace(" -> None", "")
        except (TypeError, ValueError):
            made_up = None
        if doc == made_up:
            return ""
    return inspect.cleandoc(doc).strip()


def _annotation(a: Any) -> str:
    if a is inspect.Parameter.empty or a is inspect.Signature.empty:
        return ""
    if isinstance(a, str):
        return a
    return inspect.formatannotation(a)


def _default(name: str, value: Any) -> str:
    if name == "mode" and isinstance(value, int) and not isinstance(value, bool):
        return oct(value)  # permission bits read as octal
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    text = repr(value)
    if " at 0x" in text:  # an object whose repr is its address: not deterministic
        return f"<{type(value).__name__}>"
    return text


_STUBS: Optional[dict[str, dict[str, tuple[dict[str, str], str]]]] = None


def stub_hints(obj: Any) -> tuple[dict[str, str], str]:
    """(parameter -> annotation, return annotation) of a method or attribute of a C type
    of ``mapshare._core``, read from src/mapshare/_core.pyi (C methods carry no
    annotations at run time); private type aliases are replaced by what they stand for."""
    global _STUBS
    if _STUBS is None:
        _STUBS = {}
        import mapshare

        pyi = Path(mapshare.__file__).with_name("_core.pyi")
        tree = ast.parse(pyi.read_text(encoding="utf-8")) if pyi.exists() else ast.Module([], [])
        aliases = {
            n.targets[0].id: ast.unparse(n.value)
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
        }

        def text(node: Optional[ast.expr]) -> str:
            if node is None:
                return ""
            out = ast.unparse(node)
            for alias, value in aliases.items():
                out = out.replace(alias, value)
            return out

        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef):
                continue
            table = _STUBS.setdefault(cls.name, {})
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef):
                    a = fn.args
                    params = a.posonlyargs + a.args + a.kwonlyargs
                    if a.vararg:
                        params.append(a.vararg)
                    if a.kwarg:
                        params.append(a.kwarg)
                    table[fn.name] = (
                        {p.arg: text(p.annotation) for p in params if p.annotation},
                        text(fn.returns),
                    )
    owner = getattr(obj, "__objclass__", None)
    if owner is None or getattr(owner, "__module__", "") != "mapshare._core":
        return {}, ""
    return _STUBS.get(owner.__name__, {}).get(getattr(obj, "__name__", ""), ({}, ""))


def signature(obj: Callable[..., Any], *, drop_first: bool) -> Optional[str]:
    """'(a: int, *, b: str = 'x') -> bool', without self/cls and without private
    (underscore) parameters; None if the callable has none inspect can read."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    hints, stub_ret = stub_hints(obj)
    params = list(sig.parameters.values())
    if drop_first and params and params[0].name in ("self", "cls", "type"):
        params = params[1:]
    parts: list[str] = []
    star_done = False
    slash_pending = False
    for p in params:
        if p.name.startswith("_"):
            continue
        if p.kind is p.POSITIONAL_ONLY:
            slash_pending = True
        elif slash_pending:
            parts.append("/")
            slash_pending = False
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
        stars = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        text = stars + p.name
        ann = _annotation(p.annotation) or hints.get(p.name, "")
        if ann:
            text += f": {ann}"
        if p.default is not p.empty:
            text += (" = " if ann else "=") + _default(p.name, p.default)
        parts.append(text)
    if slash_pending:
        parts.append("/")
    ret = _annotation(sig.return_annotation) or stub_ret
    return f"({', '.join(parts)})" + (f" -> {ret}" if ret else "")


def attribute_docs(cls: type) -> dict[str, tuple[str, str]]:
    """name -> (annotation, docstring) for the annotated class-level names of cls,
    read from its source: the string literal right after ``name: type`` documents it."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, tuple[str, str]] = {}
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = ""
            nxt = body[i + 1] if i + 1 < len(body) else None
            if (
                isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                doc = inspect.cleandoc(nxt.value.value)
            out[node.target.id] = (ast.unparse(node.annotation), doc)
    return out


class Member(NamedTuple):
    """One documented member of a class."""

    name: str
    section: str  # "factories", "attributes", "methods"
    signature: str
    doc: str


def public_member_names(cls: type) -> list[str]:
    """The public members a user sees on cls, defined by mapshare classes (its own and
    inherited ones, C base types included; not those of object or a builtin base)."""
    seen: dict[str, None] = {}
    for klass in cls.__mro__:
        if not _is_ours(klass):
            continue
        for name in vars(klass):
            if (not name.startswith("_") or name in DUNDERS) and name not in seen:
                seen[name] = None
    return list(seen)


def _raw(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def members(cls: type) -> list[Member]:
    """The public members of cls, sorted by section then name."""
    fields = (
        {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    )
    out: list[Member] = []
    for name in public_member_names(cls):
        if name in fields:
            continue
        raw = _raw(cls, name)
        value: Any = getattr(cls, name, None)
        if isinstance(raw, (classmethod, staticmethod)):
            sig = signature(value, drop_first=False) or "(...)"
            out.append(Member(name, "factories", sig, docstring(value)))
        elif isinstance(raw, property):
            ret = _annotation(inspect.signature(raw.fget).return_annotation) if raw.fget else ""
            kind = "read-only" if raw.fset is None else "settable"
            out.append(Member(name, "attributes", f"`{ret}`, {kind}" if ret else kind,
                              docstring(raw)))
        elif inspect.isgetsetdescriptor(raw) or inspect.ismemberdescriptor(raw):
            ret = stub_hints(raw)[1]
            out.append(Member(name, "attributes", f"`{ret}`, read-only" if ret else "read-only",
                              docstring(raw)))
        elif callable(raw):
            sig = signature(raw, drop_first=True) or "(...)"
            out.append(Member(name, "methods", sig, docstring(raw)))
    order = {"factories": 0, "attributes": 1, "methods": 2}
    out.sort(key=lambda m: (order[m.section], m.name))
    return out


def missing_docs(obj: Any) -> list[str]:
    """Public parts of obj without a docstring: obj itself, and for a class its public
    methods and properties and its dataclass fields.  Used by tests/unit/test_exports.py."""
    name = getattr(obj, "__qualname__", repr(obj))
    out = [] if docstring(obj) else [name]
    if inspect.isclass(obj):
        for m in members(obj):
            if not m.doc:
                out.append(f"{name}.{m.name}")
        if dataclasses.is_dataclass(obj):
            docs = {}
            for klass in reversed(obj.__mro__):
                if _is_ours(klass):
                    docs.update(attribute_docs(klass))
            for f in dataclasses.fields(obj):
                if not docs.get(f.name, ("", ""))[1]:
                    out.append(f"{name}.{f.name}")
    return out


# ---- rendering -----------------------------------------------------------------------------


def _public_module(cls: type) -> str:
    """Where a user finds cls: ``queue`` for ``_queue.Empty``."""
    module = cls.__module__
    if module.startswith("_"):
        try:
            if getattr(importlib.import_module(module.lstrip("_")), cls.__name__) is cls:
                return module.lstrip("_")
        except (ImportError, AttributeError):
            pass
    return module


def _bases(cls: type) -> str:
    """The bases a user can name: exported mapshare classes and public ones of other
    modules (a private C base type such as ``_core.Channel`` is an implementation detail)."""
    import mapshare

    names = []
    for b in cls.__bases__:
        if b is object:
            continue
        if _is_ours(b):
            if getattr(mapshare, b.__name__, None) is b:
                names.append(b.__name__)
        elif b.__module__ == "builtins":
            names.append(b.__name__)
        else:
            names.append(f"{_public_module(b)}.{b.__name__}")
    return f"({', '.join(names)})" if names else ""


def _shown_name(cls: type) -> str:
    return cls.__name__


def render_function(qualname: str, fn: Any) -> list[str]:
    sig = signature(fn, drop_first=False) or "(...)"
    return [
        f"### {qualname}",
        "",
        "```python",
        f"{qualname.split('.')[-1]}{sig}",
        "```",
        "",
        docstring(fn) or "*(no docstring)*",
        "",
    ]


def render_class(qualname: str, cls: type) -> list[str]:
    lines = [f"### {qualname}", ""]
    is_exc = issubclass(cls, BaseException)
    lines += ["```python", f"class {_shown_name(cls)}{_bases(cls)}", "```", ""]
    lines += [docstring(cls) or "*(no docstring)*", ""]
    if dataclasses.is_dataclass(cls):
        docs: dict[str, tuple[str, str]] = {}
        for klass in reversed(cls.__mro__):
            if _is_ours(klass):
                docs.update(attribute_docs(klass))
        lines += ["Fields (a frozen dataclass):" if cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
                  else "Fields:", ""]
        for f in dataclasses.fields(cls):
            ann, doc = docs.get(f.name, (_annotation(f.type), ""))
            lines.append(f"- `{f.name}: {ann}` — {_one_paragraph(doc)}")
        lines.append("")
    elif is_exc:
        docs = {}
        for klass in reversed(cls.__mro__):
            if _is_ours(klass):
                docs.update(attribute_docs(klass))
        if docs:
            lines += ["Attributes:", ""]
            for name, (ann, doc) in docs.items():
                if name.startswith("_"):
                    continue
                lines.append(f"- `{name}: {ann}`" + (f" — {_one_paragraph(doc)}" if doc else ""))
            lines.append("")
    titles = {"factories": "Factories and class methods", "attributes": "Attributes",
              "methods": "Methods"}
    section = None
    for m in members(cls) if not is_exc else []:
        if m.section != section:
            section = m.section
            lines += [f"**{titles[section]}**", ""]
        head = f"{_shown_name(cls)}.{m.name}"
        if m.section == "attributes":
            lines += [f"#### {head}", ""]
            if m.signature:
                lines += [f"*{m.signature}*", ""]
        else:
            lines += [f"#### {head}", "", "```python", f"{m.name}{m.signature}", "```", ""]
        lines += [m.doc or "*(no docstring)*", ""]
    return lines


def _one_paragraph(doc: str) -> str:
    return " ".join(doc.split())


def _group_of(name: str, obj: Any, listed: dict[str, str]) -> str:
    if name in listed:
        return listed[name]
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return "Errors"
    module = getattr(obj, "__module__", "").split(".")[-1].strip("_")
    return MODULE_GROUPS.get(module, OTHER[0])


def render() -> str:
    """The whole of docs/api.md."""
    import mapshare
    import mapshare.testing

    listed = {n: title for title, _, names in GROUPS for n in names}
    groups: dict[str, list[str]] = {title: [] for title, _, _ in GROUPS}
    groups[OTHER[0]] = []
    for name in mapshare.__all__:
        groups[_group_of(name, getattr(mapshare, name), listed)].append(name)
    # listed names first, in the order listed; the others by name (exceptions: root first)
    for title, _, names in GROUPS:
        known = [n for n in names if n in groups[title]]
        rest = sorted(n for n in groups[title] if n not in names)
        if title == "Errors":
            rest.sort(key=lambda n: (n != "MapshareError", n))
        groups[title] = known + rest
    intros = {title: intro for title, intro, _ in GROUPS}
    intros[OTHER[0]] = OTHER[1]

    out = [
        "# API reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the docstrings: do not edit by hand. -->",
        "",
        f"Generated from the docstrings by `{COMMAND}`; "
        "`tests/unit/test_api_docs.py` fails when this page is out of date.  Every name "
        "here is exported by `mapshare` (its `__all__`) or `mapshare.testing`; anything "
        "else is private.  Timeouts are in seconds: `None` waits forever, `0` never waits.",
        "",
        "The concepts behind these names: [concepts.md](concepts.md).",
        "",
        "From the package's docstring:",
        "",
        *("> " + line if line else ">" for line in docstring(mapshare).splitlines()),
        "",
        "| group | names |",
        "|---|---|",
    ]
    sections: list[tuple[str, str, list[tuple[str, Any]]]] = []
    for title in groups:
        if groups[title]:
            sections.append(
                (title, intros[title], [(n, getattr(mapshare, n)) for n in groups[title]])
            )
    sections.append(
        (TESTING[0], TESTING[1],
         [(f"testing.{n}", getattr(mapshare.testing, n)) for n in mapshare.testing.__all__])
    )
    for title, _, items in sections:
        out.append(f"| {title} | " + ", ".join(f"[`{q}`](#{_anchor(q)})" for q, _ in items)
                   + " |")
    out.append("")
    for title, intro, items in sections:
        out += [f"## {title}", "", intro, ""]
        for qualname, obj in items:
            if inspect.isclass(obj):
                out += render_class(qualname, obj)
            elif callable(obj):
                out += render_function(qualname, obj)
            else:
                out += [f"### {qualname}", "", "```python", f"{qualname} = {obj!r}", "```", ""]
    text = "\n".join(out).rstrip("\n") + "\n"
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than - and _ dropped."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 (writing nothing) if docs/api.md is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/api.md")
    args = parser.parse_args(argv)
    text = render()
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
