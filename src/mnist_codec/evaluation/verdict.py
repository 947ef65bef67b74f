"""The gate's two questions and one verdict over them (its report: :mod:`.gate_report`).

* **reproduce**: does the fresh run in the workspace give HEAD's committed results? (the
  workspace's ``reports/metrics_detail.json`` against HEAD's, paired where seeds and settings
  match). No acceptance applies: committed results that the code does not make are wrong.
* **regress**: are HEAD's committed results worse than the **base**, the results before this
  change (:func:`mnist_codec.evaluation.history.choose_base`)? A regression passes only where
  ``metrics_accepted.yaml`` accepts it, for that base and these results.
* **drift**, asked with regress: are HEAD's results worse than the **accepted results** (the
  last acceptance's)? Ten steps of 1%, each within its tolerance of the one before, fail here
  once their sum passes it.

Each comparison is :func:`mnist_codec.evaluation.gate.compare` with the rules of
``metrics_gate.yaml``: paired where both sides trained the same seeds with the same settings
(a code change), Welch where they differ (a params change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GateError
from . import acceptance, history
from .acceptance import Acceptance, Accepted, Regression
from .gate import Check, Rule, change_text, compare
from .history import Results

QUESTIONS = ("reproduce", "regress")  # what --only takes; drift is asked with regress


@dataclass(frozen=True)
class Comparison:
    """One comparison: ``current`` held against ``reference``, or why it was not made."""

    question: str  # reproduce | regress | drift
    reference: Results | None
    current: Results | None
    checks: tuple[Check, ...] = ()
    how: str = ""  # how the reference was chosen
    skipped: str | None = None  # why there was nothing to compare

    @property
    def digests(self) -> tuple[str, str] | None:
        """(reference, current) digests where an acceptance can apply: regress and drift, both
        sides read; None for reproduce, which no acceptance excuses."""
        if self.question == "reproduce" or self.reference is None or self.current is None:
            return None
        return self.reference.digest, self.current.digest

    def accepted_by(self, accepted: Accepted, check: Check) -> tuple[Acceptance, Regression] | None:
        if check.ok or self.digests is None:
            return None
        return accepted.covering(check.metric, *self.digests)


@dataclass(frozen=True)
class Outcome:
    comparison: Comparison
    check: Check
    accepted: tuple[Acceptance, Regression] | None

    @property
    def passed(self) -> bool:
        return self.check.ok or self.accepted is not None


@dataclass
class Verdict:
    comparisons: list[Comparison]
    accepted: Accepted
    current: Results
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outcomes = [
            Outcome(c, check, c.accepted_by(self.accepted, check)) for c in self.comparisons for check in c.checks
        ]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    def of(self, question: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.question == question), None)

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    def accepted_outcomes(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.accepted is not None]

    def stale(self) -> list[tuple[Acceptance, Regression, Comparison]]:
        """Acceptances near a failed check (one digest the same, the other not): they accept nothing."""
        seen, out = set(), []
        for o in self.failed():
            c = o.comparison
            if c.digests is None:
                continue
            for acc, reg in self.accepted.stale(o.check.metric, *c.digests):
                if reg.line not in seen:
                    seen.add(reg.line)
                    out.append((acc, reg, c))
        return out

    def tags(self, prefix: str) -> dict[str, str]:
        """The verdict as a tracking store's tags: the outcome, each question's, the base, the results."""
        regress = self.of("regress")
        base = regress.reference if regress is not None else None
        return {
            prefix: "passed" if self.passed else "failed",
            **{f"{prefix}.{q}": self.status(q) for q in ("reproduce", "regress", "drift")},
            f"{prefix}.base": base.rev.sha if base is not None and base.rev is not None else "none",
            f"{prefix}.results": self.current.digest,
        }

    def status(self, question: str) -> str:
        """passed | failed | accepted | skipped, for the tags a tracking store keeps."""
        comp = self.of(question)
        if comp is None or comp.skipped is not None:
            return "skipped"
        mine = [o for o in self.outcomes if o.comparison is comp]
        if any(not o.passed for o in mine):
            return "failed"
        return "accepted" if any(o.accepted for o in mine) else "passed"


def _drift(
    git: history.Git, accepted: Accepted, current: Results, base: Results | None, rules: list[Rule]
) -> Comparison:
    """HEAD's results against the accepted results; no checks where those are HEAD's own or the
    base (regress holds them)."""
    latest = accepted.latest
    if latest is None:
        return Comparison("drift", None, current, skipped=f"no accepted results yet ({acceptance.FILENAME})")
    when = f"{latest.date}, {acceptance.FILENAME} line {latest.line}"
    if latest.results == current.digest:
        return Comparison("drift", current, current, how=f"HEAD's results are the accepted results ({when})")
    if base is not None and latest.results == base.digest:
        return Comparison("drift", base, current, how=f"the accepted results ({when}) are the base")
    anchor = history.find_by_digest(git, latest.results)
    if anchor is None:
        why = "a shallow clone?" if git.shallow() else "never committed"
        return Comparison(
            "drift", None, current, skipped=f"the accepted results {latest.results} are not in this clone ({why})"
        )
    return Comparison("drift", anchor, current, tuple(compare(anchor.content, current.content, rules)), when)


def ask(
    root: Path,
    rules: list[Rule],
    accepted_path: Path | None,
    only: str | None = None,
    base: str | None = None,
    current: str | None = None,
) -> Verdict:
    """Ask the gate's questions in the repository at ``root`` (``only``: one of them).

    ``current``: a revision whose committed results are asked about instead of HEAD's (a
    branch, a commit, a DVC experiment's name); then there is no fresh run to reproduce.
    """
    if only is not None and only not in QUESTIONS:
        raise GateError(f"gate: --only takes {' or '.join(QUESTIONS)}, not '{only}'")
    if current is not None and only == "reproduce":
        raise GateError("gate: reproduce compares the workspace's fresh run with HEAD; --current names other results")
    git = history.Git(root)
    accepted = acceptance.load(root / acceptance.FILENAME if accepted_path is None else accepted_path, rules)
    if current is not None:
        cur = history.read_named(git, current, current)  # labelled by the name the user gave it
    else:
        head = history.head(git)
        found = history.results_at(git, head, "HEAD")
        if found is None:
            raise GateError(f"gate: HEAD ({head.short}) has no committed {history.DETAIL}: commit the results first")
        cur = found
    assert cur.rev is not None
    comparisons = []
    if current is None and only in (None, "reproduce"):
        fresh = history.read_workspace(root)
        how = "bit for bit the same file" if fresh.content == cur.content else "the workspace's reports/"
        comparisons.append(Comparison("reproduce", cur, fresh, tuple(compare(cur.content, fresh.content, rules)), how))
    if only in (None, "regress"):
        choice = history.choose_base(git, cur.rev, base)
        if choice.results is None:
            comparisons.append(Comparison("regress", None, cur, skipped=choice.how))
        else:
            checks = compare(choice.results.content, cur.content, rules)
            comparisons.append(Comparison("regress", choice.results, cur, tuple(checks), choice.how))
        comparisons.append(_drift(git, accepted, cur, choice.results, rules))
    return Verdict(comparisons, accepted, cur)


def accept(
    root: Path,
    rules: list[Rule],
    accepted_path: Path | None,
    reason: str,
    base: str | None = None,
    current: str | None = None,
    today: str | None = None,
) -> str:
    """Record each regression the gate sees now (against the base and the accepted results)
    with ``reason``; the results become the accepted results. Returns what it did, in words."""
    import datetime as dt

    reason = reason.strip()
    if not reason:
        raise GateError('accept: the reason is empty: say why these results may be worse (--reason "...")')
    v = ask(root, rules, accepted_path, only="regress", base=base, current=current)
    workspace = history.read_workspace(root) if current is None and (root / history.DETAIL).exists() else None
    if workspace is not None and workspace.content != v.current.content:
        raise GateError(
            f"accept: {history.DETAIL} differs from HEAD's: an acceptance names committed results, "
            "so commit the results first (git add reports dvc.lock; git commit)"
        )
    failed = [o for o in v.failed() if o.comparison.reference is not None]
    date = today or dt.date.today().isoformat()
    if not failed and v.accepted.latest is None:  # the starting point that drift is held against
        acceptance.append(v.accepted, Acceptance(v.current.digest, date, reason, ()))
        return (
            f"accept: {v.current.label} (results {v.current.digest}) recorded as the accepted results, "
            f"which later results are held against; commit {v.accepted.path.name}"
        )
    if not failed:
        return "accept: nothing to accept: the results pass against the base and the accepted results"
    regressions: dict[tuple[str, str], Regression] = {}
    for o in failed:
        assert o.comparison.reference is not None
        key = (o.check.metric, o.comparison.reference.digest)
        regressions.setdefault(key, Regression(*key, change_text(o.check.baseline, o.check.current)))
    acceptance.append(v.accepted, Acceptance(v.current.digest, date, reason, tuple(regressions.values())))
    shown = ", ".join(f"{r.metric} {r.change}" for r in list(regressions.values())[:4])
    more = f" and {len(regressions) - 4} more" if len(regressions) > 4 else ""
    return (
        f"accept: recorded {len(regressions)} regression(s) of {v.current.label} (results {v.current.digest}): "
        f"{shown}{more}\naccept: in {v.accepted.path.name}: commit it; the gate passes them for these results only"
    )
