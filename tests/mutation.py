"""`make mutation`: would the tests notice a wrong decision? mutmut over the modules that decide.

mutmut (its settings: ``[tool.mutmut]`` in pyproject.toml) copies ``src/`` into ``mutants/``, makes
each small change a reviewer could miss (``<`` for ``<=``, ``-`` for ``+``, a dropped argument,
``True`` for ``False``) in the modules of ``only_mutate``, one change a *mutant*, and runs the fast
tests that reach the changed function against it. A mutant the tests fail on is *killed*; one they
pass is a *survivor*: a change of behaviour no test would notice.

This script runs mutmut from scratch (its cache would keep a mutant killed after the test that
killed it lost its assertion), then scores each module: killed mutants over its mutants, less the
**equivalent** ones, those no test can kill because they change nothing a caller can see. Those are
a reviewed list, tests/mutation_equivalents.yaml, each with its reason, as metrics_accepted.yaml is
for the gate: an entry names the mutant and the lines it changes, so an entry whose mutant is gone
or now changes other lines is stale and fails the run, as does one whose mutant a test now kills.

It prints the score of every module, then every survivor as a diff, and fails (exit 1) when a
module scores under the floor, as coverage's floor does (exit 2: the run or the list is broken).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = Path("tests/mutation_equivalents.yaml")
SCOPE = Path("mutants/modules.json")  # the modules the last run mutated, for --rescore
FLOOR = 90.0  # percent of a module's non-equivalent mutants that the tests must kill

# mutmut's exit codes for a mutant (mutmut.stats.status_by_exit_code): what the tests did with it
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
KILLED.update({37: "caught by type check", -11: "segfault", -9: "segfault"})
NOT_KILLED = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious"}
_FUNCTION = re.compile(r"\.(x_|xǁ)")  # a mutant's name: <module>.x_<function>__mutmut_<n>, or xǁ<class>ǁ<method>


class MutationError(Exception):
    """The run or the list of equivalents cannot be scored (exit 2)."""


def module_of(mutant: str) -> str:
    """``mnist_codec.evaluation.gate.x__limit__mutmut_3`` -> ``mnist_codec.evaluation.gate``."""
    found = _FUNCTION.search(mutant)
    if found is None:
        raise MutationError(f"mutation: '{mutant}' is not a mutmut mutant name (<module>.x_<function>__mutmut_<n>)")
    return mutant[: found.start()]


def module_name(path: str) -> str:
    """``src/mnist_codec/evaluation/gate.py`` -> ``mnist_codec.evaluation.gate``."""
    return str(Path(path).with_suffix("")).removeprefix("src/").replace("/", ".")


def changed_lines(diff: str) -> list[str]:
    """The lines a mutant's diff removes and adds, stripped (``- old``, ``+ new``), not its context."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")) or not line.startswith(("-", "+")):
            continue
        out.append(f"{line[0]} {line[1:].strip()}")
    return out


@dataclass(frozen=True)
class Equivalent:
    """A reviewed mutant that cannot change what a caller sees, and why."""

    mutant: str
    change: tuple[str, ...]  # its changed_lines when it was reviewed
    reason: str
    line: int  # in the list, 1-based


def load_equivalents(path: Path) -> list[Equivalent]:
    """The reviewed list; every entry names its mutant, the lines it changes and a reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise MutationError(f"{path}: not valid YAML: {exc}") from None
    if root is None:
        return []
    data = yaml.safe_load(text)
    entries = data.get("equivalent") if isinstance(data, dict) else None
    if not isinstance(data, dict) or set(data) != {"equivalent"} or not isinstance(entries, list | None):
        raise MutationError(f"{path}:1: expected one key, 'equivalent', holding a list of mutants")
    nodes = next(v for k, v in root.value if k.value == "equivalent")
    out, seen = [], set()
    for entry, node in zip(entries or [], getattr(nodes, "value", []), strict=True):
        line = node.start_mark.line + 1
        if not isinstance(entry, dict) or set(entry) != {"mutant", "change", "reason"}:
            raise MutationError(f"{path}:{line}: an entry needs exactly mutant, change and reason")
        mutant, change, reason = entry["mutant"], entry["change"], entry["reason"]
        if not isinstance(mutant, str) or not isinstance(reason, str) or not reason.strip():
            raise MutationError(f"{path}:{line}: '{mutant}' needs a mutant name and a reason why it changes nothing")
        module_of(mutant)
        if not isinstance(change, list) or not change or not all(isinstance(c, str) for c in change):
            raise MutationError(f"{path}:{line}: {mutant}: 'change' lists the lines it changes ('- old', '+ new')")
        if mutant in seen:
            raise MutationError(f"{path}:{line}: {mutant} is listed twice")
        seen.add(mutant)
        out.append(Equivalent(mutant, tuple(change), reason.strip(), line))
    return out


@dataclass
class Score:
    """One module's mutants: what the tests did with each."""

    module: str
    killed: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)  # survived, no tests, suspicious, skipped
    equivalent: list[str] = field(default_factory=list)

    @property
    def counted(self) -> int:
        return len(self.killed) + len(self.survived)

    @property
    def percent(self) -> float:
        return 100.0 * len(self.killed) / self.counted if self.counted else 100.0


def score(
    results: dict[str, int | None], modules: Iterable[str], equivalents: dict[str, Equivalent]
) -> dict[str, Score]:
    """Each module's score from mutmut's exit code per mutant; a reviewed equivalent is not counted."""
    scores = {m: Score(m) for m in modules}
    for mutant, code in sorted(results.items()):
        module = module_of(mutant)
        if module not in scores:
            raise MutationError(f"mutation: {mutant} is in no module of [tool.mutmut] only_mutate")
        if code is None or code == 2:
            raise MutationError(f"mutation: {mutant} was not tested (the run stopped early): run `make mutation` again")
        s = scores[module]
        if mutant in equivalents:
            s.equivalent.append(mutant)
        elif code in KILLED:
            s.killed.append(mutant)
        else:
            s.survived.append(mutant)
    return scores


def stale(equivalents: Iterable[Equivalent], results: dict[str, int | None], diffs: dict[str, str]) -> list[str]:
    """Entries of the list that no longer describe a surviving mutant: gone, changed, or now killed."""
    out = []
    for e in equivalents:
        where = f"{EQUIVALENTS}:{e.line}: {e.mutant}"
        if e.mutant not in results:
            out.append(f"{where}: no such mutant now (its function changed?): review it again or remove it")
            continue
        now = changed_lines(diffs[e.mutant])
        if tuple(now) != e.change:
            shown = " / ".join(now)
            out.append(f"{where}: it now changes other lines ({shown}): review it again")
        elif results[e.mutant] in KILLED:
            out.append(f"{where}: a test kills it now: it was not equivalent, remove it from the list")
    return out


def table(scores: dict[str, Score], floor: float) -> str:
    width = max(len("module"), *(len(m) for m in scores))
    lines = [f"{'module':<{width}} {'mutants':>7} {'equivalent':>10} {'killed':>6} {'survived':>8} {'score':>6}"]
    for s in scores.values():
        verdict = "ok" if s.percent >= floor else f"BELOW {floor:g}%"
        lines.append(
            f"{s.module:<{width}} {s.counted + len(s.equivalent):>7} {len(s.equivalent):>10} {len(s.killed):>6} "
            f"{len(s.survived):>8} {s.percent:>5.1f}%  {verdict}"
        )
    return "\n".join(lines)


# --- the run ---------------------------------------------------------------------------------


def only_mutate(root: Path) -> list[str]:
    """The modules of [tool.mutmut] only_mutate, as mutmut reads them."""
    cwd = Path.cwd()
    os.chdir(root)  # mutmut reads pyproject.toml from the working directory
    try:
        from mutmut.configuration import config

        return [module_name(p) for p in config().only_mutate]
    finally:
        os.chdir(cwd)


def read_results(root: Path) -> dict[str, int | None]:
    results: dict[str, int | None] = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        results.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return results


def run_mutmut(root: Path, jobs: int, log: Path, modules: Iterable[str] = ()) -> None:
    """mutmut from scratch over every module, or over ``modules`` only (their mutants' names)."""
    shutil.rmtree(root / "mutants", ignore_errors=True)  # from scratch: a cached kill may be stale
    (root / "mutants").mkdir()
    mutmut = Path(sys.executable).with_name("mutmut")
    names = [f"{m}.*" for m in modules]  # a mutant's name: <module>.x_<function>__mutmut_<n>
    with open(log, "w", encoding="utf-8") as out:
        cmd = [str(mutmut), "run", "--max-children", str(jobs), *names]
        proc = subprocess.run(cmd, cwd=root, stdout=out, stderr=out)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise MutationError(f"mutation: mutmut run failed (exit {proc.returncode}); the end of {log}:\n{tail}")


def selected_test_files(root: Path) -> list[str]:
    """The test files mutmut runs against mutants ([tool.mutmut] pytest_add_cli_args_test_selection)."""
    import tomllib

    with open(root / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["tool"]["mutmut"].get("pytest_add_cli_args_test_selection", []))


def changed_modules(root: Path, modules: list[str]) -> tuple[list[str], str]:
    """The modules a change reaches (tests/mutation_scope.py), and a line that says from where."""
    import mutation_scope as scope

    worlds = scope.worlds(root, modules, selected_test_files(root))
    base, why = scope.choose_base(root, set().union(*worlds.values(), scope.EVERY_RUN))
    if base is None:
        return modules, f"mutation: no base to compare with ({why}): every module"
    try:
        reached = scope.reached(worlds, scope.changed_since(root, base))
    except ValueError as exc:
        raise MutationError(f"mutation: {exc}") from None
    named = ", ".join(m.removeprefix("mnist_codec.") for m in reached) or "none"
    reach = f"reaches {len(reached)} of {len(modules)} modules: {named}"
    return reached, f"mutation: the change since {base[:7]} ({why}) {reach}"


def diffs_of(root: Path, mutants: Iterable[str]) -> dict[str, str]:
    """Each mutant's diff against the original function, as `mutmut show` prints it."""
    cwd = Path.cwd()
    os.chdir(root)  # mutmut reads its settings and mutants/ from the working directory
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        return {m: get_diff_for_mutant(m) for m in mutants}
    finally:
        os.chdir(cwd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    parser.add_argument("--floor", type=float, default=FLOOR, help="least score of every module, in percent")
    parser.add_argument("--rescore", action="store_true", help="score the last run's mutants/ without running")
    parser.add_argument(
        "--changed",
        action="store_true",
        help="only the modules the change reaches, from the gate's base (tests/mutation_scope.py), as CI runs it",
    )
    args = parser.parse_args(argv)
    root = REPO
    try:
        equivalents = load_equivalents(root / EQUIVALENTS)
        modules = every = only_mutate(root)
        start = time.monotonic()
        if args.changed and not args.rescore:
            modules, line = changed_modules(root, every)
            print(line)
            if not modules:
                print("mutation: passed: nothing to mutate (`make mutation` mutates every module)")
                return 0
        if not args.rescore:
            print(f"mutation: mutmut over {len(modules)} modules, {args.jobs} at a time (log: mutants/mutmut.log)")
            log = root / "mutants.log"
            run_mutmut(root, args.jobs, log, modules if modules != every else ())
            shutil.move(log, root / "mutants" / "mutmut.log")
            (root / SCOPE).write_text(json.dumps(modules), encoding="utf-8")
        elif (root / SCOPE).is_file():
            modules = json.loads((root / SCOPE).read_text(encoding="utf-8"))  # the modules the last run mutated
        results = read_results(root)
        if not results:
            raise MutationError("mutation: no results in mutants/: run `make mutation`")
        results = {m: code for m, code in results.items() if module_of(m) in modules}
        equivalents = [e for e in equivalents if module_of(e.mutant) in modules]
        by_name = {e.mutant: e for e in equivalents}
        scores = score(results, modules, by_name)
        survivors = [m for s in scores.values() for m in s.survived]
        diffs = diffs_of(root, [*survivors, *(m for m in by_name if m in results)])
        problems = stale(equivalents, results, diffs)
    except MutationError as exc:
        print(exc, file=sys.stderr)
        return 2
    elapsed = time.monotonic() - start
    for mutant in survivors:
        print(f"\n# survived: {mutant}\n{diffs[mutant]}")
    print()
    print(table(scores, args.floor))
    total = sum(s.counted + len(s.equivalent) for s in scores.values())
    took = "the last run's, scored again" if args.rescore else f"in {elapsed:.0f} s"
    print(f"mutation: {total} mutants, {len(by_name)} reviewed as equivalent ({EQUIVALENTS}); {took}")
    for p in problems:
        print(p)
    low = [s.module for s in scores.values() if s.percent < args.floor]
    if low:
        print(f"mutation: FAILED: {', '.join(low)} under {args.floor:g}%: kill the survivors above with tests")
        return 1
    if problems:
        print(f"mutation: FAILED: {len(problems)} stale entries in {EQUIVALENTS}")
        return 1
    print(f"mutation: passed: every module at {args.floor:g}% or more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
