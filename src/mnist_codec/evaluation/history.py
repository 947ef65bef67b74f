"""The committed results the gate compares, read from git: at a revision, before a change, by digest.

The gate's *regress* question holds HEAD's committed ``reports/metrics_detail.json`` against
the **base**, the results before this change. :func:`choose_base` picks it, first match wins:

1. ``--base REV`` (a commit, a branch, a tag or a DVC experiment's name);
2. ``$GATE_BASE``, what a CI service hands a pull request (its base commit);
3. on a branch that ``origin/main`` does not contain yet (a pull request): the merge-base;
4. on main itself (``origin/main`` contains HEAD, or there is no ``origin/main``): the results
   before HEAD's last change to them on HEAD's first-parent history, as a push is compared
   with the commit before it.

A base named by the user (1, 2) that cannot be read is an error; a base the gate looked for
itself (3, 4) and could not find -- a shallow clone, results first committed at HEAD -- is a
*skip*, which the gate reports in one line. Results are named by their :func:`digest`, the
SHA-256 of their canonical JSON, so an acceptance survives a rebase or a squash merge.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import GateError
from .digest import digest

DETAIL = "reports/metrics_detail.json"
UPSTREAM = "origin/main"
BASE_ENV = "GATE_BASE"


@dataclass(frozen=True)
class Revision:
    """A commit the gate read results from: what the user called it, and its commit."""

    name: str
    sha: str

    @property
    def short(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class Results:
    """One side of a comparison: the detail file's content and where it came from."""

    label: str  # what the report calls it: 'base 1a2b3c4', 'HEAD 9f8e7d6', 'fresh run'
    content: dict[str, Any]
    rev: Revision | None = None  # None: the workspace's file

    @cached_property
    def digest(self) -> str:  # asked for every failed check and every note: computed once
        return digest(self.content)


@dataclass(frozen=True)
class BaseChoice:
    """The base the regress question uses, or why it has none (``results`` None: skipped)."""

    results: Results | None
    how: str  # how it was chosen, or why none was


class Git:
    """git in one repository; every call is bounded in time and fails with a clear line."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=self.root, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GateError(f"gate: git {' '.join(args)} failed: {exc}") from None
        if check and proc.returncode != 0:
            raise GateError(f"gate: git {' '.join(args)} failed: {proc.stderr.strip() or proc.returncode}")
        return proc

    def out(self, *args: str) -> str | None:
        """Its output, or None where git says no (an unknown revision, a missing path)."""
        proc = self.run(*args, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def commit(self, rev: str) -> str | None:
        return self.out("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def shallow(self) -> bool:
        return self.out("rev-parse", "--is-shallow-repository") == "true"

    def show(self, sha: str, path: str = DETAIL) -> str | None:
        proc = self.run("show", f"{sha}:{path}", check=False)
        return proc.stdout if proc.returncode == 0 else None


def experiment_commits(git: Git, name: str) -> list[tuple[str, str]]:
    """[(commit, baseline commit)] of the DVC experiments called ``name``: DVC keeps each as
    ``refs/exps/<baseline[:2]>/<baseline[2:]>/<name>``."""
    listed = git.out("for-each-ref", "--format=%(objectname) %(refname)", "refs/exps") or ""
    found = []
    for line in listed.splitlines():
        sha, _, ref = line.partition(" ")
        parts = ref.split("/")
        if len(parts) == 5 and parts[4] == name:
            found.append((sha, parts[2] + parts[3]))
    return found


def resolve(git: Git, name: str) -> Revision:
    """A commit, branch or tag (anything ``git rev-parse`` takes), else a DVC experiment's name."""
    sha = git.commit(name)
    if sha is not None:
        return Revision(name, sha)
    exps = experiment_commits(git, name)
    if len(exps) > 1:  # one name run on several baselines: the one made from HEAD, if any
        head = git.commit("HEAD")
        exps = [e for e in exps if e[1] == head] or exps
    if len(exps) == 1:
        return Revision(name, exps[0][0])
    if exps:
        shown = ", ".join(sha[:7] for sha, _ in exps)
        raise GateError(f"gate: '{name}' names {len(exps)} DVC experiments ({shown}): give the commit instead")
    raise GateError(f"gate: unknown revision '{name}': not a commit, a branch, a tag or a DVC experiment here")


def parse_results(text: str, where: str) -> dict[str, Any]:
    try:
        content = json.loads(text)
    except ValueError as exc:
        raise GateError(f"gate: {where} is not JSON: {exc}") from None
    if not isinstance(content, dict):
        raise GateError(f"gate: {where} is not a JSON object of codecs")
    return content


def results_at(git: Git, rev: Revision, label: str) -> Results | None:
    """The detail file committed at ``rev``; None where that commit has none."""
    text = git.show(rev.sha)
    if text is None:
        return None
    return Results(f"{label} {rev.short}", parse_results(text, f"{DETAIL} at {rev.name} ({rev.short})"), rev)


def read_named(git: Git, name: str, label: str) -> Results:
    """The results at a revision the user named: an unknown one, or one without results, is an error."""
    rev = resolve(git, name)
    results = results_at(git, rev, label)
    if results is None:
        raise GateError(f"gate: {name} ({rev.short}) has no {DETAIL}: no results to compare with")
    return results


def previous_version(git: Git, head: Revision) -> BaseChoice:
    """The results before HEAD's last change to them, on HEAD's first-parent history."""
    changed = git.out("log", "--first-parent", "--format=%H", "-1", head.sha, "--", DETAIL)
    if not changed:
        return BaseChoice(None, f"no commit on HEAD's history holds {DETAIL}")
    parent = git.commit(f"{changed}^1")
    if parent is None:
        if git.shallow():
            return BaseChoice(
                None,
                f"a shallow clone: the history before {changed[:7]} is not here (clone or fetch it whole, "
                "e.g. actions/checkout's fetch-depth: 0)",
            )
        return BaseChoice(None, f"{changed[:7]} is the first commit: no results before it")
    found = results_at(git, Revision(f"{changed[:7]}^", parent), "base")
    if found is None:
        return BaseChoice(None, f"{DETAIL} first appears in {changed[:7]}: no earlier results")
    how = f"the results before the last change to them, {changed[:7]}"
    return BaseChoice(found, how)


def choose_base(git: Git, head: Revision, explicit: str | None = None) -> BaseChoice:
    """The base of the regress question (the module's docstring gives the order)."""
    env = os.environ.get(BASE_ENV, "").strip()
    if explicit:
        return BaseChoice(read_named(git, explicit, "base"), f"--base {explicit}")
    if env:
        return BaseChoice(read_named(git, env, "base"), f"${BASE_ENV} ({env})")
    upstream = git.commit(UPSTREAM)
    if upstream is not None and not git.is_ancestor(head.sha, upstream):
        fork = git.out("merge-base", head.sha, upstream)
        if fork is None:
            why = "a shallow clone" if git.shallow() else "no common history"
            return BaseChoice(None, f"HEAD and {UPSTREAM} have no merge-base here ({why})")
        found = results_at(git, Revision(f"merge-base with {UPSTREAM}", fork), "base")
        if found is None:
            return BaseChoice(None, f"the merge-base with {UPSTREAM} ({fork[:7]}) has no {DETAIL}")
        return BaseChoice(found, f"the merge-base with {UPSTREAM}")
    return previous_version(git, head)


def find_by_digest(git: Git, wanted: str) -> Results | None:
    """Committed results whose digest is ``wanted``, on any ref (branches, tags, DVC experiments),
    newest first; None where no version of the detail file in this clone has it."""
    for commit in (git.out("log", "--all", "--format=%H", "--", DETAIL) or "").split():
        text = git.show(commit)
        if text is None:  # the commit deleted the file
            continue
        try:
            content = json.loads(text)
        except ValueError:
            continue
        if isinstance(content, dict) and digest(content) == wanted:
            return Results(f"accepted {commit[:7]}", content, Revision(commit[:7], commit))
    return None


def head(git: Git) -> Revision:
    if git.out("rev-parse", "--git-dir") is None:
        raise GateError(f"gate: {git.root} is not in a git repository: the gate compares committed results")
    sha = git.commit("HEAD")
    if sha is None:
        raise GateError("gate: this repository has no commit yet: commit the results first")
    return Revision("HEAD", sha)


def read_workspace(root: Path) -> Results:
    path = root / DETAIL
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GateError(f"gate: cannot read {DETAIL}: {exc.strerror} (run `make repro`)") from None
    return Results("fresh run", parse_results(text, DETAIL))
