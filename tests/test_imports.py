"""Imports point down: no module of the package imports one that imports it back, directly or
through others, counting every import -- at the top, inside a function, and under
``TYPE_CHECKING`` (a circle hidden from the interpreter is a circle in the design all the same).
The same holds between the package's parts (``codecs``, ``tracking``, ``serving``, ``cli``...):
their imports form layers, so each part can be read, tested and changed from the bottom up."""

from __future__ import annotations

import grimp
import networkx as nx
import pytest

PACKAGE = "mnist_codec"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, cache_dir=None)  # TYPE_CHECKING and function-level imports included


def edges(graph: grimp.ImportGraph, part=lambda m: m) -> nx.DiGraph:
    g = nx.DiGraph()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            a, b = part(importer), part(imported)
            if a != b:
                g.add_edge(a, b)
    return g


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """Each import of a circle, with the line that makes it."""
    lines = []
    for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
        details = graph.get_import_details(importer=a, imported=b)
        where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details) or "(through a sub-module)"
        lines.append(f"{a} -> {b} ({where})")
    return "\n".join(lines)


def part_of(module: str) -> str:
    """mnist_codec.tracking.runs -> tracking; mnist_codec.cli -> cli."""
    return module.split(".")[1] if "." in module else module


def test_no_module_imports_one_that_imports_it_back(graph):
    g = edges(graph)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    circles = [[a for a, _ in nx.find_cycle(g.subgraph(c))] for c in cycles]
    assert not circles, "import circles:\n\n" + "\n\n".join(describe(graph, c) for c in circles)


def test_the_packages_parts_form_layers(graph):
    g = edges(graph, part_of)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, f"parts of the package that import each other: {cycles}"
    # the layer the issue named: tracking holds runs and the registry; serving and the pipeline use it
    for low, high in (("tracking", "serving"), ("tracking", "pipeline"), ("codecs", "tracking"), ("data", "codecs")):
        assert not nx.has_path(g, low, high), f"{low} imports {high}, which sits above it"


def test_the_check_sees_a_circle_hidden_under_type_checking(tmp_path, monkeypatch):
    """The test above would pass on a graph that missed TYPE_CHECKING imports: prove it does not."""
    pkg = tmp_path / "circular_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    g = edges(grimp.build_graph("circular_pkg", cache_dir=None))
    assert [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1] == [
        ["circular_pkg.a", "circular_pkg.b"]
    ]
