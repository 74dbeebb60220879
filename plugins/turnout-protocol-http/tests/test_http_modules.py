"""The plugin's modules stay small and import one another one way (issue 11): no module over
``MAX_LINES`` lines, and no cycle among the imports that run when a module is imported
(top-level ``from .x import ...`` and ``from . import x``, outside ``if TYPE_CHECKING:``;
imports inside functions run later and are not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "turnout_protocol_http"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE
MAX_LINES = 650


def modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SRC.glob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run at import time: the module's, and those of the ``if``/``try``
    blocks at its top level (but an ``if TYPE_CHECKING:`` block; its ``else`` runs)."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                out += _top_level(node.body)
            out += _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _top_level(node.body)
            for handler in node.handlers:
                out += _top_level(handler.body)
            out += _top_level(node.orelse) + _top_level(node.finalbody)
        else:
            out.append(node)
    return out


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports when it is imported."""
    found: set[str] = set()
    for node in _top_level(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import ..., from . import x
                base = node.module
            elif node.level == 0 and node.module and node.module.split(".")[0] == PACKAGE:
                base = node.module[len(PACKAGE) + 1 :] or None
            else:
                continue
            if base:
                found.add(base.split(".")[0])
            else:
                found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    found.add(parts[1])
    return found & known


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_is_small(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{PACKAGE}/{name}.py has {lines} lines (at most {MAX_LINES})"


def test_no_import_cycle():
    mods = modules()
    graph = {name: runtime_imports(path, set(mods)) for name, path in mods.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_the_cycle_finder_finds_cycles(tmp_path):
    """(the checks above would pass vacuously if the walk saw no imports)"""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .c import x\n"
        "if TYPE_CHECKING:\n"
        "    from .a import y\n"
    )
    (tmp_path / "c.py").write_text(f"import {PACKAGE}.a\n\ndef f():\n    from .b import z\n")
    known = {"a", "b", "c"}
    graph = {n: runtime_imports(tmp_path / f"{n}.py", known) for n in sorted(known)}
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    graph["c"] = set()
    assert find_cycle(graph) is None
    real = {name: runtime_imports(path, set(modules())) for name, path in modules().items()}
    assert "exchange" in real["downstream"] and "downstream" not in real["exchange"]
