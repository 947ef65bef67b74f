"""What the gate shows (mnist_codec.evaluation.gate_report): one row a codec with the question
that guards main, the notes a reviewer reads (failed checks, accepted changes and their reasons,
stale acceptances), the terminal's 120 columns and CI's report of at most 30 lines -- each held
against a reviewed file in tests/expected/ where the whole text matters."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_codec.evaluation import gate_report
from mnist_codec.evaluation.acceptance import Acceptance, Accepted, Regression
from mnist_codec.evaluation.gate import Check, Rule, compare
from mnist_codec.evaluation.history import Results, Revision
from mnist_codec.evaluation.stats import summarize
from mnist_codec.evaluation.verdict import Comparison, Verdict
from verdicts import BASE, RULES, codec, comparison, content, judged, results


def test_a_dropped_codec_is_a_row_and_fails():
    head = results("HEAD", content(drop="deep_tanh"), "a" * 40)
    v = judged(head)
    rows = {r.codec: r for r in gate_report.rows(v)}
    assert list(rows) == ["pca", "ae", "deep_tanh"]  # HEAD's codecs, then the one only the base has
    assert rows["deep_tanh"].verdict == "FAIL: regress" and rows["deep_tanh"].values["head"] is None
    assert rows["deep_tanh"].test == "-" and rows["deep_tanh"].limit == "-"


def test_the_row_shows_the_guarding_question_regress_first():
    head = results("HEAD", content(ae=1.01), "a" * 40)
    anchor = results("accepted", content(ae=0.99), "d" * 40)
    drift = comparison("drift", anchor, head, "2026-12-01, metrics_accepted.yaml line 9")
    v = judged(head, fresh=content(ae=1.01), drift=drift)
    row = {r.codec: r for r in gate_report.rows(v)}["ae"]
    assert row.limit == "+1.50%"  # regress's limit, against the base's 0.0138
    assert row.changes == {"base": "+1.00%", "accepted": "+2.02%", "fresh": "+0.00%"}
    assert row.values["accepted"] == pytest.approx(0.0138 * 0.99)
    only_repro = Verdict(
        [comparison("reproduce", head, results("fresh run", content(ae=1.02)))], Accepted(Path("x")), head
    )
    row = {r.codec: r for r in gate_report.rows(only_repro)}["ae"]
    assert row.values["base"] is None and row.changes["fresh"] == "+0.99%" and row.test == "paired"


def test_changes_in_percent():
    assert gate_report.change_text(2.0, 2.1) == "+5.00%" and gate_report.change_text(2.0, 1.9) == "-5.00%"
    assert (
        gate_report.change_text(None, 1.0)
        == gate_report.change_text(1.0, None)
        == gate_report.change_text(0.0, 1.0)
        == "-"
    )
    assert gate_report._num(None) == "-" and gate_report._num(0.0123456789) == "0.012346"


def test_the_questions_in_the_order_the_gate_asks_them():
    head = results("HEAD", content(ae=1.05), "a" * 40)
    anchor = results("accepted", content(), "d" * 40)
    v = judged(head, fresh=content(ae=1.10), drift=comparison("drift", anchor, head))
    assert gate_report._questions(v.failed()) == ["reproduce", "regress", "drift"]
    assert gate_report._summary(v) == "FAILED: ae (reproduce, regress, drift)"
    assert v.of("drift") is v.comparisons[2] and v.of("nothing") is None


# --- the report ---------------------------------------------------------------------------------


def rich() -> Verdict:
    """Every kind of row and note: a regression, an accepted one, a failed check beyond the MSE,
    a stale entry, a dropped codec, a fresh run that does not reproduce, drift."""
    head = results("HEAD", content(ae=1.05, deep=0.9, drop="pca", ae_psnr=19.5), "a" * 40)
    anchor = results("accepted", content(), "d" * 40)
    reason = "a smaller learning rate: slower to converge, kept for stability"
    regs = (Regression("ae.mse", BASE.digest, "+5.00%", 14), Regression("ae.psnr", "0" * 16, "-0.10", 17))
    acc = Accepted(Path("metrics_accepted.yaml"), (Acceptance(head.digest, "2026-12-07", reason, regs, 10),))
    drift = comparison("drift", anchor, head, "2026-12-01, metrics_accepted.yaml line 20")
    return judged(head, fresh=content(ae=1.05, deep=0.95, drop="pca", ae_psnr=19.5), accepted=acc, drift=drift)


EXPECTED = Path(__file__).parent / "expected"


def test_the_terminal_report_of_every_kind_of_row_and_note():
    """The whole text, as a reviewed file (a change to it is a diff a reviewer reads): the rows
    and notes say which codec failed which question, the limit applied, the reason accepted."""
    text = gate_report.format_terminal(rich())
    assert text + "\n" == (EXPECTED / "gate_terminal.txt").read_text(encoding="utf-8")
    assert max(len(line) for line in text.splitlines()) <= 120


def test_the_markdown_report_of_every_kind_of_row_and_note():
    text = gate_report.report_markdown(rich(), "mnist-codec HEAD: the gate", "2-core CPU")
    assert text == (EXPECTED / "gate_report.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= gate_report.REPORT_LINES


def accepted_and_named() -> Verdict:
    """Results named by the user (a revision with spaces in its name), every regression accepted,
    HEAD's results the accepted results: no fresh run, nothing fails."""
    head = Results(
        "exp-lr main@{1 day ago} aaaaaaa",
        content(ae=1.05, deep=1.05, pca=1.01, ae_psnr=19.0),
        Revision("exp", "a" * 40),
    )
    metrics = ["pca.mse", "ae.mse", "ae.psnr", "deep_tanh.mse"]
    regs = tuple(Regression(m, BASE.digest, "+5%", 12 + i) for i, m in enumerate(metrics))
    reason = "slower-but-steadier training, kept"
    acc = Accepted(Path("metrics_accepted.yaml"), (Acceptance(head.digest, "2026-12-07", reason, regs, 10),))
    how = "HEAD's results are the accepted results (2026-12-07, metrics_accepted.yaml line 10)"
    return Verdict(
        [comparison("regress", BASE, head, "--base main"), Comparison("drift", head, head, how=how)], acc, head
    )


def test_the_report_of_accepted_regressions_of_named_results():
    v = accepted_and_named()
    assert v.passed and gate_report._judged(v) == "exp-lr main@{1 day ago}"
    text = gate_report.format_terminal(v)
    assert text + "\n" == (EXPECTED / "gate_terminal_accepted.txt").read_text(encoding="utf-8")
    markdown = gate_report.report_markdown(v, "mnist-codec exp: the gate", "2-core CPU")
    assert markdown == (EXPECTED / "gate_report_accepted.md").read_text(encoding="utf-8")


def test_a_skipped_question_and_the_sides_names():
    head = results("HEAD", content(), "a" * 40)
    v = Verdict(
        [
            Comparison("regress", None, head, skipped="a shallow clone"),
            comparison("reproduce", head, results("fresh run", content())),
        ],
        Accepted(Path("x")),
        head,
    )
    assert gate_report._question_lines(v) == [
        "regress: SKIPPED: a shallow clone",
        "reproduce: fresh run against HEAD aaaaaaa (how): 9 of 9 checks passed",
    ]
    assert gate_report._side(None) == "-" and gate_report._side(results("fresh run", {})) == "fresh"
    assert gate_report._side(head) == "aaaaaaa" and gate_report._reference(v, "drift") is None
    assert gate_report._reference(v, "reproduce") is head
    assert gate_report._summary(v) == "passed"
    lines = gate_report.format_terminal(v).splitlines()
    assert lines[2].split()[:3] == ["codec", "base", "-"] and lines[-1] == "gate: passed; 9 of 9 checks passed"


def test_better_is_beyond_the_margin_in_the_rules_direction():
    assert gate_report._better(Check("x.mse", 1.0, 0.9, 1.0, True, "ok"))  # no margin: any improvement
    assert not gate_report._better(Check("x.mse", 1.0, 1.0, 1.0, True, "ok"))
    assert not gate_report._better(Check("x.psnr", 20.0, 20.5, 19.5, True, "ok"))  # exactly the margin
    assert gate_report._better(Check("x.psnr", 20.0, 20.6, 19.5, True, "ok"))


def test_many_failed_codecs_are_counted_in_the_summary():
    head = results("HEAD", {f"c{i}": codec([1.0, 1.1, 1.2]) for i in range(6)}, "a" * 40)
    base = results("base", {f"c{i}": codec([0.5, 0.55, 0.6]) for i in range(6)}, "b" * 40)
    v = Verdict([comparison("regress", base, head)], Accepted(Path("x")), head)
    assert gate_report._summary(v) == "FAILED: 6 codecs (regress)"
    five = Verdict(
        [
            comparison(
                "regress",
                base,
                results("HEAD", {**base.content, **{f"c{i}": head.content[f"c{i}"] for i in range(5)}}, "a" * 40),
            )
        ],
        Accepted(Path("x")),
        head,
    )
    assert gate_report._summary(five) == "FAILED: c0, c1, c2, c3, c4 (regress)"


def crowded() -> Verdict:
    """Five codecs with long names, each failing four checks beyond its MSE, and a long reason
    for the base: more notes than fit, and lines that wrap."""
    names = ["conv_leaky_relu", "deep_leaky_relu", "deep_silu_wide", "deep_gelu_wide", "conv_tanh_wide"]

    def side(f: float) -> dict:
        out = {}
        for n in names:
            c = codec([0.011 * f, 0.0112 * f, 0.0108 * f], 20.0 / f)
            c["mse_digit"] = {str(d): summarize([0.01 * f * (1 + d / 10)] * 3) for d in range(3)}
            out[n] = c
        return out

    head, base = results("HEAD", side(1.05), "a" * 40), results("base", side(1.0), "b" * 40)
    how = (
        "the merge-base with origin/main, the pull-request's base as the CI service hands it over in GATE_BASE "
        "(re-run on a self-hosted runner)"
    )
    checks = tuple(compare(base.content, head.content, [*RULES, Rule("*.mse_digit.*", "lower", rel_floor=0.005)]))
    return Verdict([Comparison("regress", base, head, checks, how)], Accepted(Path("metrics_accepted.yaml")), head)


def test_a_crowded_report_wraps_within_120_columns_and_counts_what_did_not_fit():
    v = crowded()
    text = gate_report.format_terminal(v)
    assert text + "\n" == (EXPECTED / "gate_terminal_crowded.txt").read_text(encoding="utf-8")
    assert max(len(line) for line in text.splitlines()) <= 120
    markdown = gate_report.report_markdown(v, "mnist-codec HEAD: the gate", "2-core CPU")
    assert markdown == (EXPECTED / "gate_report_crowded.md").read_text(encoding="utf-8")
    assert len(markdown.splitlines()) == gate_report.REPORT_LINES


def test_notes_beyond_the_room_are_counted_and_the_hint_kept_last():
    notes = gate_report._notes(rich(), 3, str)
    assert notes == [
        "missing (regress, drift): pca and its 5 checks: the results lack it",
        "and 3 more: `mnist-codec gate --all` lists every check",
        "to accept: mnist-codec accept --reason ..., then commit metrics_accepted.yaml",
    ]
    head = results("HEAD", content(), "a" * 40)
    assert gate_report._notes(judged(head, fresh=content(ae=1.1)), 5, str) == []  # reproduce: no hint to accept


def test_a_report_of_many_acceptances_and_failures_stays_within_30_lines():
    head = results("HEAD", content(ae=1.2, deep=1.2, ae_psnr=15.0), "a" * 40)
    v = judged(head, fresh=content(ae=1.3, deep=1.3, ae_psnr=14.0))
    text = gate_report.report_markdown(v, "t", "m")
    assert len(text.splitlines()) <= gate_report.REPORT_LINES and text.endswith("\n")
