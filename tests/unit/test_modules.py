"""The package's module structure: one concept per module, layered without circles."""

from __future__ import annotations

import ast
from pathlib import Path

import mapshare

PACKAGE = Path(mapshare.__file__).resolve().parent


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports at run time, at any depth (an import inside
    a function is still an edge: it runs when the function does), leaving out
    ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.orelse:
                visit(stmt)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and (
            node.module == "mapshare" or node.module.startswith("mapshare.")
        ):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mapshare" and len(parts) > 1:
                    found.add(parts[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        graph[path.stem] = {m for m in _runtime_imports(path) if m in modules} - {path.stem}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return cycles


def test_no_import_circles() -> None:
    # __init__ (the contract) and __main__/_cli/_demo (entry points) import the others;
    # every other module imports only modules below it.
    graph = _graph()
    assert {"_segment", "_sync", "_handle", "_inspect"} <= graph.keys()
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_platform_branches_name_capabilities() -> None:
    # Policy branches on what a platform can do (_platform.HAS_OWNER_UIDS, ...), not on
    # its name: only _platform itself looks at the platform's name.
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "_platform":
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ('PLATFORM == "windows"', "_WINDOWS", 'sys.platform.startswith("linux")'):
            if needle in text:
                offenders.append(f"{path.name}: {needle}")
    assert offenders == []
