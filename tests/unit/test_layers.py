"""The import graph keeps its layers: core <- SDK <- pipeline packages <- shell, and no cycles.

Every import counts, including those inside functions and under ``TYPE_CHECKING`` (a lower layer
that needs a type from a higher one declares a Protocol instead).
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: What each top-level package may import of the project's own packages.
ALLOWED: dict[str, frozenset[str]] = {
    "lineage": frozenset(),  # the core
    "producers": frozenset({"lineage"}),  # the SDK
    "stream_apps": frozenset({"lineage", "producers"}),
    "sinks": frozenset({"lineage", "producers"}),
    "shell": frozenset({"lineage", "producers", "stream_apps", "sinks"}),  # wires processes
}


@dataclass(frozen=True)
class Import:
    module: str  # importing module
    target: str  # imported project module
    where: str  # path:line


def _modules(root: Path) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in ALLOWED:
        for f in sorted((root / pkg).rglob("*.py")):
            name = ".".join(f.relative_to(root).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(root: Path) -> Iterator[Import]:
    """Every import of a project module by a project module (relative imports resolved)."""
    mods = _modules(root)
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".")
                    keep = len(parts) - node.level + (1 if is_pkg else 0)
                    base = ".".join(parts[:keep] + ([node.module] if node.module else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                target = _resolve(name, mods)
                if target is not None and target != mod and not (is_pkg and mod.startswith(target + ".")):
                    yield Import(mod, target, f"{path.relative_to(root)}:{node.lineno}")


def layer_violations(root: Path) -> list[str]:
    out = []
    for imp in imports(root):
        src, dst = imp.module.split(".")[0], imp.target.split(".")[0]
        if src != dst and dst not in ALLOWED[src]:
            out.append(f"{imp.where}: {imp.module} imports {imp.target} ({src} may not import {dst})")
    return sorted(set(out))


def module_cycles(root: Path) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {m: set() for m in _modules(root)}
    for imp in imports(root):
        graph[imp.module].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_each_package_imports_only_the_layers_below_it() -> None:
    bad = layer_violations(REPO)
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules() -> None:
    cycles = module_cycles(REPO)
    assert not cycles, "module cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for pkg in ALLOWED:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "lineage" / "codec.py").write_text("import json\n")
    (tmp_path / "producers" / "emitter.py").write_text("from lineage.codec import x\n")
    return tmp_path


def test_the_check_sees_a_sideways_import_inside_a_function(tree: Path) -> None:
    (tree / "stream_apps" / "worker.py").write_text("def f():\n    from sinks.store import Store\n")
    (tree / "sinks" / "store.py").write_text("")
    assert layer_violations(tree) == [
        "stream_apps/worker.py:2: stream_apps.worker imports sinks.store (stream_apps may not import sinks)"
    ]


def test_the_check_sees_the_core_reaching_up_under_type_checking(tree: Path) -> None:
    (tree / "lineage" / "settings.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shell.cli import main\n"
    )
    (tree / "shell" / "cli.py").write_text("")
    assert layer_violations(tree) == ["lineage/settings.py:3: lineage.settings imports shell.cli (lineage may not import shell)"]


def test_the_check_sees_a_module_cycle_through_a_relative_import(tree: Path) -> None:
    (tree / "sinks" / "a.py").write_text("from . import b\n")
    (tree / "sinks" / "b.py").write_text("def f():\n    from sinks.a import g\n")
    assert module_cycles(tree) == [["sinks.a", "sinks.b"]]
    assert layer_violations(tree) == []
