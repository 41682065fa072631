"""The load tester's modules import each other without a cycle, read from the
source with `ast`: every import statement counts, also those inside functions
and under TYPE_CHECKING, because a cycle hidden in a function is still two
modules that cannot be understood (or split) one without the other."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

LOADTEST = Path(__file__).resolve().parent.parent / "loadtest"


def _module_name(path: Path) -> str:
    return "loadtest" if path.stem == "__init__" else f"loadtest.{path.stem}"


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """The modules one import statement names, absolute ("from loadtest import
    x" names loadtest.x as well, for x may be a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        # The package a relative import starts from: the module's own for __init__.
        package = module.split(".") if module == "loadtest" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports."""
    sources = {_module_name(p): p for p in sorted(package.glob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps.update(n for n in _imported(node, module) if n in sources)
        deps.discard(module)
        graph[module] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its first module repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_loadtest_modules_import_without_a_cycle() -> None:
    graph = import_graph(LOADTEST)
    assert {"loadtest.chaos", "loadtest.chaos_spec", "loadtest.crowd"} <= graph.keys()
    assert "loadtest.chaos_spec" in graph["loadtest.chaos"]  # the graph sees real imports
    cycle = find_cycle(graph)
    assert cycle is None, "loadtest modules import each other: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(("sources", "cycle"), [
    ({"a": "from loadtest import b\n", "b": "import loadtest.a\n"}, True),
    # Inside a function and under TYPE_CHECKING count too.
    ({"a": "def f():\n    from loadtest.b import x\n",
      "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n"},
     True),
    ({"a": "from loadtest.b import x\n", "b": "from loadtest.c import y\n",
      "c": "from loadtest.a import z\n"}, True),
    ({"a": "from loadtest.b import x\nimport loadtest.c\n", "b": "import loadtest.c\n",
      "c": "import os\n"}, False),
])
def test_the_cycle_finder_sees_every_kind_of_import(tmp_path: Path, sources: dict[str, str],
                                                    cycle: bool) -> None:
    for name, text in sources.items():
        (tmp_path / f"{name}.py").write_text(text, encoding="utf-8")
    found = find_cycle(import_graph(tmp_path))
    assert (found is not None) is cycle, found
    if found is not None:
        assert found[0] == found[-1] and set(found) <= {f"loadtest.{n}" for n in sources}
