"""What the gate shows: its verdict for a terminal of 120 columns, CI's Markdown report of at
most 30 lines, and the table of two files' checks (``mnist-codec gate --baseline``).

One row a codec (its MSE on each side, the changes, the limit and test of the question that
guards main, the verdict over all its checks), then notes: failed checks beyond the codecs'
MSE, accepted changes with their reasons, stale acceptances, and how to accept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import acceptance
from .gate import Check, change_text, is_headline
from .history import Results
from .verdict import Outcome, Verdict

ORDER = ("reproduce", "regress", "drift")  # the order the gate asks its questions in
REPORT_LINES = 30


def _codec(metric: str) -> str:
    return metric.split(".")[0]


def _is_codec_mse(metric: str) -> bool:
    """A codec's headline MSE (``ae.mse``), shown in its row rather than in the notes."""
    return metric.endswith(".mse") and is_headline(metric)


def _questions(outcomes: list[Outcome]) -> list[str]:
    """The questions among ``outcomes``, in the order the gate asks them."""
    return [q for q in ORDER if any(o.comparison.question == q for o in outcomes)]


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
        limit = "-" if check is None or check.limit is None else change_text(check.baseline, check.limit)
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
                {
                    "base": change_text(base, head),
                    "accepted": change_text(anchor, head),
                    "fresh": change_text(head, fresh),
                },
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
            f"failed ({questions}): {code(metric)} {change_text(c.baseline, c.current)}, "
            f"limit {change_text(c.baseline, c.limit)} ({c.why})"
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
        shown = [f"{code(o.check.metric)} {change_text(o.check.baseline, o.check.current)}" for o in each[:3]]
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


def format_checks(checks: list[Check], every: bool = False) -> str:
    """The gate's table for a terminal (under 120 columns): every codec's headline checks and
    any other check that failed; ``every`` lists all of them. ``limit`` is the worst value that
    passes; ``test`` says how it was set and ``basis`` why that test."""
    shown = [c for c in checks if every or is_headline(c.metric) or not c.ok]
    width = max([len("metric"), *(len(c.metric) for c in shown)])
    header = f"{'metric':<{width}} {'baseline':>10} {'current':>10} {'change':>8} {'limit':>10}  "
    lines = [header + f"{'test':<6}  {'basis':<27}  result"]
    for c in shown:
        cur = "-" if c.current is None else f"{c.current:.6g}"
        lim = "-" if c.limit is None else f"{c.limit:.6g}"
        lines.append(
            f"{c.metric:<{width}} {c.baseline:>10.6g} {cur:>10} {change_text(c.baseline, c.current):>8} {lim:>10}  "
            f"{c.test:<6}  {c.basis:<27}  {c.why}"
        )
    hidden = [c for c in checks if c not in shown]
    if hidden:
        tests = ", ".join(f"{t} {sum(c.test == t for c in hidden)}" for t in sorted({c.test for c in hidden}))
        lines.append(f"(and {len(hidden)} more checks, all passed: {tests}; --all lists them)")
    failed = sum(not c.ok for c in checks)
    lines.append(f"gate: {len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)
