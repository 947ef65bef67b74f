"""The gate's two questions, one verdict, and the report a reviewer reads.

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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GateError
from . import acceptance, history
from .acceptance import Acceptance, Accepted, Regression
from .gate import Check, Rule, compare, is_headline
from .history import Results

QUESTIONS = ("reproduce", "regress")  # what --only takes; drift is asked with regress
ORDER = ("reproduce", "regress", "drift")
REPORT_LINES = 30


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
        regressions.setdefault(key, Regression(*key, _pct(o.check.baseline, o.check.current)))
    acceptance.append(v.accepted, Acceptance(v.current.digest, date, reason, tuple(regressions.values())))
    shown = ", ".join(f"{r.metric} {r.change}" for r in list(regressions.values())[:4])
    more = f" and {len(regressions) - 4} more" if len(regressions) > 4 else ""
    return (
        f"accept: recorded {len(regressions)} regression(s) of {v.current.label} (results {v.current.digest}): "
        f"{shown}{more}\naccept: in {v.accepted.path.name}: commit it; the gate passes them for these results only"
    )


# --- what the gate shows -------------------------------------------------------------------


def _codec(metric: str) -> str:
    return metric.split(".")[0]


def _is_codec_mse(metric: str) -> bool:
    """A codec's headline MSE (``ae.mse``), shown in its row rather than in the notes."""
    return metric.endswith(".mse") and is_headline(metric)


def _questions(outcomes: list[Outcome]) -> list[str]:
    """The questions among ``outcomes``, in the order the gate asks them."""
    return [q for q in ORDER if any(o.comparison.question == q for o in outcomes)]


def _pct(reference: float | None, current: float | None) -> str:
    if reference is None or current is None or reference == 0:
        return "-"
    return f"{(current / reference - 1) * 100:+.2f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


@dataclass(frozen=True)
class Row:
    codec: str
    values: dict[str, float | None]  # question -> the MSE it compared: base, HEAD, fresh, accepted
    changes: dict[str, str]  # 'base', 'accepted', 'fresh' -> the change of the MSE
    limit: str
    test: str
    verdict: str


def _mse(results: Results | None, codec: str) -> float | None:
    entry = (results.content if results is not None else {}).get(codec)
    mse = entry.get("mse") if isinstance(entry, dict) else None
    return float(mse["mean"]) if isinstance(mse, dict) and "mean" in mse else None


def rows(v: Verdict) -> list[Row]:
    """One row a codec: its MSE on each side, the changes, the limit and test of the question
    that guards main (regress, else reproduce), and the verdict over all its checks."""
    repro, regress, drift = v.of("reproduce"), v.of("regress"), v.of("drift")
    guard = next((c for c in (regress, drift, repro) if c is not None and c.checks), None)
    out = []
    sides = [v.current.content, *(c.reference.content for c in v.comparisons if c.reference is not None)]
    codecs = list(dict.fromkeys(k for side in sides for k, e in side.items() if isinstance(e, dict) and "mse" in e))
    for codec in codecs:  # HEAD's, then any a reference has and HEAD lacks (its checks fail: missing)
        head = _mse(v.current, codec)
        base = _mse(regress.reference, codec) if regress else None
        anchor = _mse(drift.reference, codec) if drift and drift.skipped is None else None
        fresh = _mse(repro.current, codec) if repro else None
        check = next((c for c in guard.checks if c.metric == f"{codec}.mse"), None) if guard else None
        limit = "-" if check is None or check.limit is None else _pct(check.baseline, check.limit)
        mine = [o for o in v.outcomes if _codec(o.check.metric) == codec]
        failed = _questions([o for o in mine if not o.passed])
        if failed:
            verdict = "FAIL: " + ", ".join(failed)
        elif any(o.accepted for o in mine):
            verdict = "accepted"
        elif check is not None and check.limit is not None and check.current is not None and _better(check):
            verdict = "pass, better"
        else:
            verdict = "pass"
        out.append(
            Row(
                codec,
                {"base": base, "head": head, "fresh": fresh, "accepted": anchor},
                {"base": _pct(base, head), "accepted": _pct(anchor, head), "fresh": _pct(head, fresh)},
                limit,
                "-" if check is None or check.current is None else check.test,
                verdict,
            )
        )
    return out


def _better(check: Check) -> bool:
    """Better than the reference by more than the margin the check allows the other way."""
    assert check.limit is not None and check.current is not None
    margin = abs(check.limit - check.baseline)
    if check.limit >= check.baseline:  # lower is better
        return check.current < check.baseline - margin
    return check.current > check.baseline + margin


def _reference(v: Verdict, question: str) -> Results | None:
    comp = v.of(question)
    return comp.reference if comp is not None else None


def _judged(v: Verdict) -> str:
    """What the judged results are called: HEAD, or the revision the user named (--current)."""
    return v.current.label.rsplit(" ", 1)[0]


def _side(results: Results | None) -> str:
    if results is None:
        return "-"
    return results.rev.short if results.rev is not None else "fresh"


def _question_lines(v: Verdict) -> list[str]:
    lines = []
    for c in v.comparisons:
        if c.skipped is not None:
            lines.append(f"{c.question}: SKIPPED: {c.skipped}")
            continue
        if not c.checks:  # drift, where the accepted results are the base: regress holds them
            lines.append(f"{c.question}: {c.how}")
            continue
        mine = [o for o in v.outcomes if o.comparison is c]
        bad = sum(not o.passed for o in mine)
        acc = sum(o.accepted is not None for o in mine)
        tail = f"{len(mine) - bad} of {len(mine)} checks passed" + (f", {acc} accepted" if acc else "")
        ref = c.reference.label if c.reference is not None else "-"
        cur = c.current.label if c.current is not None else "-"
        lines.append(f"{c.question}: {cur} against {ref} ({c.how}): {tail}")
    return lines


def _notes(v: Verdict, limit: int, code: Callable[[str], str]) -> list[str]:
    """Failed checks beyond the codecs' MSE, accepted changes with their reasons, stale entries."""
    notes = []
    failed = [o for o in v.failed() if not _is_codec_mse(o.check.metric)]
    gone = {_codec(o.check.metric) for o in v.failed() if _is_codec_mse(o.check.metric) and o.check.current is None}
    for codec in sorted(gone):  # a codec the results lack: one note, not one per metric
        mine = [o for o in failed if _codec(o.check.metric) == codec]
        questions = ", ".join(_questions(mine)) or "regress"
        notes.append(f"missing ({questions}): {code(codec)} and its {len(mine) + 1} checks: the results lack it")
    by_metric: dict[str, list[Outcome]] = {}
    for o in failed:
        if _codec(o.check.metric) not in gone:
            by_metric.setdefault(o.check.metric, []).append(o)
    for metric, outcomes in by_metric.items():
        c = outcomes[0].check
        questions = ", ".join(o.comparison.question for o in outcomes)
        notes.append(
            f"failed ({questions}): {code(metric)} {_pct(c.baseline, c.current)}, limit {_pct(c.baseline, c.limit)}"
            f" ({c.why})"
        )
    by_acceptance: dict[int, list[Outcome]] = {}
    for o in v.accepted_outcomes():  # one note an acceptance: its reason, the codecs' MSE first
        assert o.accepted is not None
        by_acceptance.setdefault(o.accepted[0].line, []).append(o)
    for outcomes in by_acceptance.values():
        first = outcomes[0].accepted
        assert first is not None
        acc = first[0]
        questions = ", ".join(_questions(outcomes))
        outcomes.sort(key=lambda o: not _is_codec_mse(o.check.metric))
        each: list[Outcome] = []  # a metric once (regress and drift may accept the same), its first
        for o in outcomes:
            if all(e.check.metric != o.check.metric for e in each):
                each.append(o)
        shown = [f"{code(o.check.metric)} {_pct(o.check.baseline, o.check.current)}" for o in each[:3]]
        more = f" and {len(each) - 3} more checks" if len(each) > 3 else ""
        notes.append(f'accepted ({questions}) on {acc.date}, "{acc.reason}": {", ".join(shown)}{more}')
    for acc, reg, comp in v.stale():
        assert comp.reference is not None and comp.current is not None
        other = (
            f"results {acc.results}, these are {comp.current.digest}"
            if acc.results != comp.current.digest
            else f"base {reg.base}, this one is {comp.reference.digest}"
        )
        notes.append(f"stale: {acceptance.FILENAME} line {reg.line}, {code(reg.metric)}: accepted for {other}")
    hint = []
    if any(o.comparison.question != "reproduce" for o in v.failed()):  # how to let it through, kept last
        hint = [f"to accept: {code('mnist-codec accept --reason ...')}, then commit {acceptance.FILENAME}"]
    limit -= len(hint)
    if len(notes) > limit:
        notes = [*notes[: limit - 1], f"and {len(notes) - limit + 1} more: `mnist-codec gate --all` lists every check"]
    return notes + hint


def _summary(v: Verdict) -> str:
    """passed, or FAILED and which codecs each question failed."""
    failed = v.failed()
    if not failed:
        acc = len(v.accepted_outcomes())
        asked = [c for c in v.comparisons if c.skipped is None and c.checks]
        if not asked:
            return "passed, nothing compared (every question skipped)"
        return "passed" + (f", {acc} regressions accepted" if acc else "")
    codecs = sorted({_codec(o.check.metric) for o in failed})
    questions = _questions(failed)
    shown = ", ".join(codecs) if len(codecs) <= 5 else f"{len(codecs)} codecs"
    return f"FAILED: {shown} ({', '.join(questions)})"


def format_terminal(v: Verdict) -> str:
    """The verdict for a terminal of 120 columns: the questions, one row a codec, the notes."""
    import textwrap

    lines = [
        wrapped
        for q in _question_lines(v)
        for wrapped in textwrap.wrap(f"gate: {q}", 118, subsequent_indent="      ", break_on_hyphens=False)
    ]
    table = rows(v)
    base = _side(_reference(v, "regress"))
    judged = f"{_judged(v)[:7]} {_side(v.current)}"  # 'HEAD 1a2b3c4', or the revision's name
    width, side = max([len("codec"), *(len(r.codec) for r in table)]), max(12, len(judged))
    lines.append(
        f"{'codec':<{width}} {'base ' + base:>12} {judged:>{side}} {'fresh':>8}  {'vs base':>8} "
        f"{'vs accepted':>11} {'limit':>7} {'test':<6}  verdict"
    )
    for r in table:
        values = [_num(r.values[k]) for k in ("base", "head", "fresh")]
        lines.append(
            f"{r.codec:<{width}} {values[0]:>12} {values[1]:>{side}} {values[2]:>8}  "
            f"{r.changes['base']:>8} {r.changes['accepted']:>11} {r.limit:>7} {r.test:<6}  {r.verdict}"
        )
    for note in _notes(v, 12, lambda s: s):  # a long reason wraps: every line within 120 columns
        lines += textwrap.wrap(note, 118, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
    closing = f"gate: {_summary(v)}; {sum(o.passed for o in v.outcomes)} of {len(v.outcomes)} checks passed"
    lines += textwrap.wrap(closing, 118, subsequent_indent="      ", break_on_hyphens=False)
    return "\n".join(lines)


def report_markdown(v: Verdict, title: str, machine: str) -> str:
    """CI's comparison report (at most 30 lines): the questions, a row a codec, the notes."""
    from .table import display_name

    base = _side(_reference(v, "regress"))
    lines = [
        f"## {title}",
        "",
        f"**Gate: {_summary(v)}**. Run on {machine}. Limit: the worst change that passes.",
        "",
        *[f"- {q}" for q in _question_lines(v)],
        "",
        (
            f"| Codec | MSE base `{base}` | MSE {_judged(v)} `{_side(v.current)}` | MSE fresh | vs base "
            "| vs accepted | fresh vs HEAD | Limit | Test | Verdict |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows(v):
        verdict = f"**{r.verdict}**" if r.verdict.startswith("FAIL") else r.verdict
        lines.append(
            f"| {display_name(r.codec)} | {_num(r.values['base'])} | {_num(r.values['head'])} | "
            f"{_num(r.values['fresh'])} | {r.changes['base']} | {r.changes['accepted']} | {r.changes['fresh']} | "
            f"{r.limit} | {r.test} | {verdict} |"
        )
    room = REPORT_LINES - len(lines) - 1  # the notes' lines, after a blank one
    notes = _notes(v, max(room, 1), lambda s: f"`{s}`")
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines[:REPORT_LINES]) + "\n"
