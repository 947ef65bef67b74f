"""The verdict over the gate's questions, built in memory: what passes, what an acceptance
covers, which question fails (the report a reviewer reads of it: tests/test_gate_report.py).

tests/test_gate_history.py asks the same questions through git and the CLI; here each
comparison is made directly, so that every decision is held by a test of milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_codec.errors import GateError
from mnist_codec.evaluation import gate_report, history, verdict
from mnist_codec.evaluation.acceptance import Acceptance, Accepted
from mnist_codec.evaluation.gate import Check, compare
from mnist_codec.evaluation.history import Results, Revision
from mnist_codec.evaluation.stats import summarize
from mnist_codec.evaluation.verdict import Comparison, Verdict
from verdicts import BASE, RULES, accepting, content, judged, results

# --- what passes --------------------------------------------------------------------------------


def test_an_unchanged_result_passes_every_question():
    head = results("HEAD", content(), "a" * 40)
    v = judged(head, fresh=content())
    assert v.passed and not v.failed() and not v.accepted_outcomes() and not v.stale()
    assert [v.status(q) for q in ("reproduce", "regress", "drift")] == ["passed", "passed", "skipped"]
    assert {r.codec: r.verdict for r in gate_report.rows(v)} == {"pca": "pass", "ae": "pass", "deep_tanh": "pass"}


def test_a_regression_fails_regress_and_its_codec_only():
    head = results("HEAD", content(ae=1.05), "a" * 40)
    v = judged(head, fresh=content(ae=1.05))
    assert not v.passed
    assert {o.check.metric for o in v.failed()} == {"ae.mse"}
    assert {o.comparison.question for o in v.failed()} == {"regress"}
    assert (v.status("reproduce"), v.status("regress")) == ("passed", "failed")
    rows = {r.codec: r for r in gate_report.rows(v)}
    assert rows["ae"].verdict == "FAIL: regress" and rows["pca"].verdict == "pass"
    assert rows["ae"].changes["base"] == "+5.00%" and rows["ae"].changes["fresh"] == "+0.00%"
    assert rows["ae"].limit == "+1.50%" and rows["ae"].test == "paired"
    assert rows["ae"].values["base"] == pytest.approx(0.0138) and rows["ae"].values["head"] == pytest.approx(
        0.0138 * 1.05
    )


def test_an_improvement_passes_and_says_better_in_either_direction():
    head = results("HEAD", content(deep=0.9), "a" * 40)
    rows = {r.codec: r for r in gate_report.rows(judged(head))}
    assert rows["deep_tanh"].verdict == "pass, better" and rows["ae"].verdict == "pass"
    lower = Check("x.mse", 1.0, 0.9, 1.05, True, "ok")
    higher = Check("x.psnr", 20.0, 20.5, 19.98, True, "ok")
    assert gate_report._better(lower) and gate_report._better(higher)
    assert not gate_report._better(Check("x.mse", 1.0, 0.96, 1.05, True, "ok"))  # within the margin: noise
    assert not gate_report._better(Check("x.psnr", 20.0, 20.01, 19.98, True, "ok"))
    assert not gate_report._better(Check("x.mse", 1.0, 0.95, 1.05, True, "ok"))  # exactly the margin: not beyond it


def test_the_fresh_run_must_reproduce_and_no_acceptance_excuses_it():
    head = results("HEAD", content(), "a" * 40)
    fresh_worse = content(ae=1.05)
    v = judged(head, fresh=fresh_worse, accepted=accepting(head, "ae.mse"))
    (failed,) = v.failed()
    assert failed.comparison.question == "reproduce" and failed.accepted is None
    assert failed.comparison.digests is None
    assert {r.codec: r.verdict for r in gate_report.rows(v)}["ae"] == "FAIL: reproduce"
    assert v.status("reproduce") == "failed" and v.status("regress") == "passed"


def test_an_acceptance_covers_exactly_the_results_and_base_it_names():
    head = results("HEAD", content(ae=1.05), "a" * 40)
    v = judged(head, accepted=accepting(head, "ae.mse"))
    assert v.passed and v.status("regress") == "accepted"
    (o,) = v.accepted_outcomes()
    assert o.check.metric == "ae.mse" and o.passed and not o.check.ok
    assert {r.codec: r.verdict for r in gate_report.rows(v)}["ae"] == "accepted"
    # another metric, other results or another base: not covered
    assert not judged(head, accepted=accepting(head, "deep_tanh.mse")).passed
    other = results("HEAD", content(ae=1.06), "c" * 40)
    assert not judged(other, accepted=accepting(head, "ae.mse")).passed
    assert not judged(head, accepted=accepting(head, "ae.mse", base="0" * 16)).passed


def test_an_entry_sharing_one_digest_is_stale_and_named_once():
    head = results("HEAD", content(ae=1.05, deep=1.05), "a" * 40)
    elsewhere = accepting(head, "ae.mse", base="0" * 16)  # these results, another base
    v = judged(head, accepted=elsewhere)
    stale = v.stale()
    assert [(reg.metric, comp.question) for _, reg, comp in stale] == [("ae.mse", "regress")]
    assert not judged(head).stale()


def test_a_verdict_without_checks_passes_and_reproduce_has_no_digests():
    head = results("HEAD", content(), "a" * 40)
    empty = Verdict([Comparison("regress", None, head, skipped="a shallow clone")], Accepted(Path("x")), head)
    assert empty.passed and empty.status("regress") == "skipped" and empty.status("drift") == "skipped"
    assert Comparison("regress", None, head).digests is None
    assert Comparison("regress", head, None).digests is None
    assert Comparison("drift", BASE, head).digests == (BASE.digest, head.digest)
    assert gate_report._summary(empty) == "passed, nothing compared (every question skipped)"


def test_the_tags_a_tracking_store_keeps():
    head = results("HEAD", content(ae=1.05), "a" * 40)
    tags = judged(head, fresh=content(ae=1.05)).tags("gate")
    assert tags == {
        "gate": "failed",
        "gate.reproduce": "passed",
        "gate.regress": "failed",
        "gate.drift": "skipped",
        "gate.base": "b" * 40,
        "gate.results": head.digest,
    }
    alone = Verdict([Comparison("reproduce", head, head)], Accepted(Path("x")), head)
    assert alone.tags("g")["g.base"] == "none" and alone.tags("g")["g"] == "passed"
    unread = Verdict([Comparison("regress", results("base", content()), head, ())], Accepted(Path("x")), head)
    assert unread.tags("g")["g.base"] == "none"  # a base read from a file, not a commit


# --- asked in a repository: ask, accept and drift read committed results -----------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@mnist-codec.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@mnist-codec.invalid",
}
BEFORE, AFTER = content(), content(ae=1.05)


class Repo:
    def __init__(self, root: Path):
        self.root = root
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        import os
        import subprocess

        proc = subprocess.run(
            ["git", *args], cwd=self.root, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def commit(self, data: dict | None) -> str:
        import json

        if data is not None:
            (self.root / "reports").mkdir(exist_ok=True)
            (self.root / history.DETAIL).write_text(json.dumps(data))
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", "step")
        return self.git("rev-parse", "HEAD")

    def workspace(self, data: dict | None) -> None:
        import json

        if data is None:
            (self.root / history.DETAIL).unlink()
        else:
            (self.root / history.DETAIL).write_text(json.dumps(data))

    def results(self, label: str, sha: str, data: dict, name: str = "") -> Results:
        return Results(f"{label} {sha[:7]}", data, Revision(name or label, sha))


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Repo:
    monkeypatch.delenv(history.BASE_ENV, raising=False)
    return Repo(tmp_path)


def test_ask_puts_the_questions_to_the_committed_results(repo):
    c1, c2 = repo.commit(BEFORE), repo.commit(AFTER)
    head, base = repo.results("HEAD", c2, AFTER), Results(f"base {c1[:7]}", BEFORE, Revision(f"{c2[:7]}^", c1))
    v = verdict.ask(repo.root, RULES, None)
    assert v.current == head and v.accepted == Accepted(repo.root / "metrics_accepted.yaml")
    assert v.comparisons == [
        Comparison(
            "reproduce",
            head,
            Results("fresh run", AFTER),
            tuple(compare(AFTER, AFTER, RULES)),
            "bit for bit the same file",
        ),
        Comparison(
            "regress",
            base,
            head,
            tuple(compare(BEFORE, AFTER, RULES)),
            f"the results before the last change to them, {c2[:7]}",
        ),
        Comparison("drift", None, head, skipped="no accepted results yet (metrics_accepted.yaml)"),
    ]
    repo.workspace(content(ae=1.1))
    (reproduce,) = verdict.ask(repo.root, RULES, None, only="reproduce").comparisons
    assert reproduce.how == "the workspace's reports/" and reproduce.current == Results("fresh run", content(ae=1.1))
    regress, drift = verdict.ask(repo.root, RULES, None, only="regress", base=c2).comparisons
    assert regress.how == f"--base {c2}" and regress.reference == Results(f"base {c2[:7]}", AFTER, Revision(c2, c2))
    assert drift.skipped == "no accepted results yet (metrics_accepted.yaml)"


def test_ask_about_named_results_and_a_file_of_acceptances(repo, tmp_path):
    c1 = repo.commit(BEFORE)
    repo.commit(AFTER)
    elsewhere = tmp_path / "accepted.yaml"
    v = verdict.ask(repo.root, RULES, elsewhere, current=c1)
    assert v.accepted.path == elsewhere and v.current == Results(f"{c1} {c1[:7]}", BEFORE, Revision(c1, c1))
    assert [c.question for c in v.comparisons] == ["regress", "drift"]
    assert v.comparisons[0].skipped == f"{c1[:7]} is the first commit: no results before it"
    assert v.comparisons[0].current == v.current
    with pytest.raises(GateError) as err:
        verdict.ask(repo.root, RULES, None, only="everything")
    assert str(err.value) == "gate: --only takes reproduce or regress, not 'everything'"
    with pytest.raises(GateError) as err:
        verdict.ask(repo.root, RULES, None, only="reproduce", current=c1)
    assert str(err.value) == (
        "gate: reproduce compares the workspace's fresh run with HEAD; --current names other results"
    )
    c3 = repo.commit(None)
    repo.git("rm", "-q", history.DETAIL)
    c4 = repo.commit(None)
    with pytest.raises(GateError) as err:
        verdict.ask(repo.root, RULES, None)
    assert (
        str(err.value)
        == f"gate: HEAD ({c4[:7]}) has no committed reports/metrics_detail.json: commit the results first"
    )
    assert c3 != c4


def accepting_file(repo: Repo, results: str, date: str = "2026-12-01", line_base: str = "") -> None:
    regs = f"\n  - metric: ae.mse\n    base: {line_base}\n    change: +5.00%" if line_base else " []"
    (repo.root / "metrics_accepted.yaml").write_text(
        f"accepted:\n- results: {results}\n  date: '{date}'\n  reason: the accepted results\n  regressions:{regs}\n"
    )


def test_drift_holds_head_against_the_accepted_results(repo):
    c1 = repo.commit(BEFORE)
    c2 = repo.commit(content(ae=1.01))
    head, base = repo.results("HEAD", c2, content(ae=1.01)), repo.results("base", c1, BEFORE)
    from mnist_codec.evaluation import acceptance

    def drift(accepted_digest: str | None, with_base: Results | None) -> Comparison:
        if accepted_digest is None:
            (repo.root / "metrics_accepted.yaml").unlink(missing_ok=True)
        else:
            accepting_file(repo, accepted_digest)
        accepted = acceptance.load(repo.root / "metrics_accepted.yaml", RULES)
        return verdict._drift(history.Git(repo.root), accepted, head, with_base, RULES)

    when = "2026-12-01, metrics_accepted.yaml line 2"
    assert drift(None, base) == Comparison(
        "drift", None, head, skipped="no accepted results yet (metrics_accepted.yaml)"
    )
    assert drift(head.digest, base) == Comparison(
        "drift", head, head, how=f"HEAD's results are the accepted results ({when})"
    )
    assert drift(base.digest, base) == Comparison(
        "drift", base, head, how=f"the accepted results ({when}) are the base"
    )
    anchor = Results(f"accepted {c1[:7]}", BEFORE, Revision(c1[:7], c1))
    expected = Comparison("drift", anchor, head, tuple(compare(BEFORE, head.content, RULES)), when)
    assert drift(base.digest, None) == expected  # no base: the accepted results are found by digest
    other = repo.results("base", c2, content(ae=0.9))
    assert drift(base.digest, other) == expected
    gone = "0123456789abcdef"
    assert drift(gone, base) == Comparison(
        "drift", None, head, skipped=f"the accepted results {gone} are not in this clone (never committed)"
    )


def test_drift_in_a_shallow_clone_says_so(repo, tmp_path):
    repo.commit(BEFORE)
    c2 = repo.commit(AFTER)
    shallow = tmp_path / "shallow"
    repo.git("clone", "-q", "--depth", "1", f"file://{repo.root}", str(shallow))
    accepted = Accepted(Path("f"), (Acceptance(Results("x", BEFORE).digest, "2026-12-01", "r", (), 2),))
    head = repo.results("HEAD", c2, AFTER)
    comp = verdict._drift(history.Git(shallow), accepted, head, None, RULES)
    assert comp.skipped == f"the accepted results {accepted.latest.results} are not in this clone (a shallow clone?)"


def test_accept_records_each_regression_of_the_committed_results(repo):
    c1 = repo.commit(BEFORE)
    worse = content(ae=1.05, deep=1.05, pca=1.01, ae_psnr=19.0)
    worse["deep_tanh"]["psnr"] = summarize([19.0] * 3)
    repo.commit(worse)
    with pytest.raises(GateError) as err:
        verdict.accept(repo.root, RULES, None, "  ")
    assert str(err.value) == 'accept: the reason is empty: say why these results may be worse (--reason "...")'
    repo.workspace(AFTER)
    with pytest.raises(GateError) as err:
        verdict.accept(repo.root, RULES, None, "why")
    assert str(err.value) == (
        "accept: reports/metrics_detail.json differs from HEAD's: an acceptance names committed results, "
        "so commit the results first (git add reports dvc.lock; git commit)"
    )
    repo.workspace(None)  # no fresh run: only the committed results are asked about
    said = verdict.accept(repo.root, RULES, None, " slower, kept ", today="2026-12-07")
    head = Results("HEAD", worse).digest
    assert said == (
        f"accept: recorded 5 regression(s) of HEAD {repo.git('rev-parse', 'HEAD')[:7]} (results {head}): "
        "pca.mse +1.00%, ae.mse +5.00%, ae.psnr -5.00%, deep_tanh.mse +5.00% and 1 more\n"
        "accept: in metrics_accepted.yaml: commit it; the gate passes them for these results only"
    )
    from mnist_codec.evaluation import acceptance

    (entry,) = acceptance.load(repo.root / "metrics_accepted.yaml", RULES).acceptances
    assert (entry.results, entry.date, entry.reason) == (head, "2026-12-07", "slower, kept")
    base = Results("b", BEFORE).digest
    assert [(r.metric, r.base, r.change) for r in entry.regressions] == [
        ("pca.mse", base, "+1.00%"),
        ("ae.mse", base, "+5.00%"),
        ("ae.psnr", base, "-5.00%"),
        ("deep_tanh.mse", base, "+5.00%"),
        ("deep_tanh.psnr", base, "-5.00%"),
    ]
    assert verdict.ask(repo.root, RULES, None, only="regress").passed
    assert verdict.accept(repo.root, RULES, None, "again") == (
        "accept: nothing to accept: the results pass against the base and the accepted results"
    )
    assert c1


def test_accept_of_named_results_and_a_first_acceptance(repo):
    c1 = repo.commit(BEFORE)
    c2 = repo.commit(AFTER)
    repo.git("branch", "-q", "exp", c2)
    repo.git("reset", "-q", "--hard", c1)
    repo.workspace(content(ae=2.0))  # a workspace that is not the named results: not asked about
    said = verdict.accept(repo.root, RULES, None, "the start", current=c1, today="2026-12-07")
    assert said == (
        f"accept: {c1} {c1[:7]} (results {Results('x', BEFORE).digest}) recorded as the accepted results, which "
        "later results are held against; commit metrics_accepted.yaml"
    )
    said = verdict.accept(repo.root, RULES, None, "slower", base=c1, current="exp", today="2026-12-07")
    # against the base and the accepted results, both c1's: one regression, once
    assert said.startswith(
        f"accept: recorded 1 regression(s) of exp {c2[:7]} (results {Results('x', AFTER).digest}): ae.mse +5.00%\n"
    )
