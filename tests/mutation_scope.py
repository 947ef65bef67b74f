"""Which modules a change can move the mutation score of: `make mutation`'s ``--changed``.

A mutant's fate depends on three things: its module's code, the code that module calls, and the
tests that run it. So a module of ``[tool.mutmut] only_mutate`` is *reached* by a change to any
file of its **world**: its own source, every module of the package it imports (directly or
through others, ``TYPE_CHECKING`` and function-level imports included: grimp's graph), and the
test files of mutmut's selection that import it or a module that imports it. A change to a file
every run reads (pyproject.toml, the lock, the scoring script, the reviewed equivalents, the
tests' shared helpers) reaches every module.

The base a change is measured from is the one the gate uses (docs/gate.md): ``GATE_BASE`` (a
pull request's base), else the merge-base with ``origin/main`` on a branch it does not contain,
else, on main itself, the parent of the last commit that changed any module's world: CI on main
always re-proves the newest change to the code that decides, as the gate re-proves the newest
results. ``make mutation`` without ``--changed`` mutates every module, as a scheduled run does.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from mnist_codec.evaluation.history import BASE_ENV, UPSTREAM, Git

TESTS = Path(__file__).resolve().parent
PACKAGE = "mnist_codec"
# Read by every run: a change to one of them can move any module's score.
EVERY_RUN = (
    "pyproject.toml",
    "constraints.txt",
    "tests/mutation.py",
    "tests/mutation_scope.py",
    "tests/mutation_equivalents.yaml",
    "tests/conftest.py",
)


def source_of(module: str) -> str:
    """``mnist_codec.evaluation.gate`` -> ``src/mnist_codec/evaluation/gate.py`` (a package: its __init__)."""
    path = Path("src", *module.split("."))
    return str(path / "__init__.py") if (TESTS.parent / path).is_dir() else f"{path}.py"


@cache
def _graph():
    import grimp

    return grimp.build_graph(PACKAGE, cache_dir=None)


def imported_by(module: str) -> set[str]:
    """``module`` and every module of the package it imports, directly or through others."""
    return {module, *_graph().find_upstream_modules(module)}


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(modules of the package, helper modules of tests/) a test file imports."""
    package, helpers = set(), set()
    local = {p.stem for p in TESTS.glob("*.py")}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                package.add(name)
            elif name.split(".")[0] in local:
                helpers.add(name.split(".")[0])
    return package & _graph().modules, helpers  # `from pkg.mod import name`: the module, not the name


def worlds(root: Path, modules: Iterable[str], test_files: Iterable[str]) -> dict[str, set[str]]:
    """Each module's world: the files (relative to ``root``) whose change can move its score."""
    out = {m: {source_of(d) for d in imported_by(m)} for m in modules}
    for rel in test_files:
        package, helpers = imports_of(root / rel)
        reached = set().union(*(imported_by(m) for m in package))
        helper_files = {f"tests/{h}.py" for h in helpers}
        for m, files in out.items():
            if m in reached:
                files.update({rel, *helper_files})
    return out


def changed_since(root: Path, base: str) -> set[str]:
    """Files that differ between ``base`` and the working tree (uncommitted edits and new files too)."""
    git = Git(root)
    diff = git.out("diff", "--name-only", base, "--")
    if diff is None:
        raise ValueError(f"git cannot compare the working tree with {base!r}")
    untracked = git.out("ls-files", "--others", "--exclude-standard") or ""
    return {line for line in f"{diff}\n{untracked}".splitlines() if line}


def choose_base(root: Path, files: Iterable[str]) -> tuple[str | None, str]:
    """(the base revision, how it was chosen); None: no base here, every module is mutated. The
    gate's order (mnist_codec.evaluation.history.choose_base), through its git: on main, HEAD's
    first-parent history, as a push is compared with the commit before it."""
    git = Git(root)
    explicit = os.environ.get(BASE_ENV, "").strip()
    if explicit:
        return explicit, BASE_ENV
    head, upstream = git.commit("HEAD"), git.commit(UPSTREAM)
    if head and upstream and not git.is_ancestor(head, upstream):
        fork = git.out("merge-base", head, upstream)
        if fork:
            return fork, f"the merge-base with {UPSTREAM}"
    last = git.out("log", "--first-parent", "-1", "--format=%H", "HEAD", "--", *sorted(files))
    if not last:
        return None, "no commit changed the code that decides or its tests"
    parent = git.commit(f"{last}^1")
    if not parent:
        return None, f"the last change to the code that decides ({last[:7]}) has no parent here"
    return parent, f"the parent of {last[:7]}, the last change to the code that decides or its tests"


def reached(worlds_: dict[str, set[str]], changed: set[str]) -> list[str]:
    """The modules whose world holds a changed file; all of them where a file of EVERY_RUN changed."""
    if changed & set(EVERY_RUN):
        return list(worlds_)
    return [m for m, files in worlds_.items() if files & changed]
