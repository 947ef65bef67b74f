"""The gate guards main: HEAD's committed results against the base, acceptances, drift.

Each test builds a git repository of its own whose commits hold detail files made from the
committed reports/metrics_detail.json, one codec's seeds scaled (a code change keeps the seeds
and settings, so the comparison is paired, as CI's is), and asks `mnist-codec gate` and
`mnist-codec accept` as a person would, in that repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mnist_codec import cli
from mnist_codec.evaluation import acceptance, history, verdict
from mnist_codec.evaluation.digest import digest
from mnist_codec.evaluation.gate import load_rules
from mnist_codec.evaluation.stats import summarize

from conftest import REPO

BASELINE = json.loads((REPO / history.DETAIL).read_text())
RULES = load_rules(REPO / "metrics_gate.yaml")
ENV = {
    "GIT_AUTHOR_NAME": "mnist-codec tests",
    "GIT_AUTHOR_EMAIL": "tests@mnist-codec.invalid",
    "GIT_COMMITTER_NAME": "mnist-codec tests",
    "GIT_COMMITTER_EMAIL": "tests@mnist-codec.invalid",
}


def scaled(results: dict, codec: str, factor: float) -> dict:
    """``results`` with every seed of ``codec``'s MSE multiplied by ``factor``."""
    out = json.loads(json.dumps(results))
    out[codec]["mse"] = summarize([v * factor for v in results[codec]["mse"]["per_seed"]])
    return out


class Repo:
    """A git repository holding the gate's rules and a detail file, committed step by step."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / ".dvc").mkdir()
        shutil.copy(REPO / "metrics_gate.yaml", root / "metrics_gate.yaml")
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        import os

        proc = subprocess.run(
            ["git", *args], cwd=self.root, capture_output=True, text=True, env={**os.environ, **ENV}, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def commit(self, results: dict | None = None, message: str = "results", **files: str) -> str:
        if results is not None:
            (self.root / "reports").mkdir(exist_ok=True)
            (self.root / history.DETAIL).write_text(json.dumps(results, indent=2))
        for name, text in files.items():
            (self.root / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    @property
    def accepted(self) -> Path:
        return self.root / acceptance.FILENAME


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.delenv(history.BASE_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    r = Repo(tmp_path / "repo")
    monkeypatch.chdir(r.root)
    return r


def gate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["gate", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def accept(capsys: pytest.CaptureFixture[str], reason: str, *args: str) -> tuple[int, str]:
    code = cli.main(["accept", "--reason", reason, *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def row(text: str, codec: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.startswith(codec + " "))


def test_a_regression_committed_with_its_results_fails_until_accepted(repo, capsys):
    base = repo.commit(BASELINE, "the results before")
    worse = scaled(BASELINE, "deep_relu", 1.05)
    repo.commit(worse, "a smaller learning rate, with its reports/ and dvc.lock")
    code, out = gate(capsys)
    assert code == 1, out
    assert "reproduce: fresh run against HEAD" in out  # the workspace is HEAD's: reproduced
    assert f"base {base[:7]}" in out and "FAIL: regress" in " ".join(row(out, "deep_relu"))
    assert row(out, "deep_relu")[4] == "+5.00%" and row(out, "ae")[-1] == "pass"
    assert "to accept: mnist-codec accept --reason ..., then commit metrics_accepted.yaml" in out

    code, out = accept(capsys, "a smaller learning rate: slower to converge, kept for stability " * 2)
    assert code == 0, out
    entry = yaml.safe_load(repo.accepted.read_text())["accepted"][-1]
    assert entry["results"] == digest(worse) and entry["reason"].startswith("a smaller")  # a long reason, kept whole
    assert {(r["metric"], r["base"]) for r in entry["regressions"]} >= {("deep_relu.mse", digest(BASELINE))}
    assert all(r["metric"].startswith("deep_relu.") for r in entry["regressions"])
    repo.commit(message="accept the slower learning rate")
    code, out = gate(capsys, "--report", "report.md")
    assert code == 0, out
    assert row(out, "deep_relu")[-1] == "accepted" and max(len(line) for line in out.splitlines()) <= 120
    report = (repo.root / "report.md").read_text()
    note = next(line for line in report.splitlines() if line.startswith("- accepted (regress) on 20"))
    assert 'kept for stability": `deep_relu.mse` +5.00%' in note and note.count("kept for stability") == 2

    repo.commit(message="README only", **{"README.md": "docs\n"})
    assert gate(capsys)[0] == 0  # the base is still the results before the last change to them

    repo.commit(scaled(worse, "deep_relu", 1.04), "another regression")
    code, out = gate(capsys)
    assert code == 1 and "FAIL: regress" in out  # the first acceptance covers those results only


def test_small_steps_that_add_up_fail_against_the_accepted_results(repo, capsys):
    repo.commit(BASELINE, "start")
    assert accept(capsys, "the results when the gate began to hold drift")[0] == 0
    repo.commit(message="the accepted results")
    results, verdicts = BASELINE, []
    for step in range(4):  # each 1% worse than the one before: deep_relu's tolerance is 2.5%
        results = scaled(results, "deep_relu", 1.01)
        repo.commit(results, f"step {step}")
        code, out = gate(capsys, "--only", "regress")
        verdicts.append(code)
        cells = row(out, "deep_relu")
        assert cells[4] == "+1.00%"  # against the base, every step is small
    assert verdicts == [0, 0, 1, 1]  # +3.03% against the accepted results: drift
    assert "FAIL: drift" in " ".join(cells) and cells[5] == "+4.06%"


def test_an_improvement_passes_and_giving_it_back_fails(repo, capsys):
    repo.commit(BASELINE, "start")
    repo.commit(scaled(BASELINE, "deep_tanh", 0.95), "better")
    code, out = gate(capsys, "--only", "regress")
    assert code == 0 and " ".join(row(out, "deep_tanh")[-2:]) == "pass, better"
    repo.commit(BASELINE, "given back")
    code, out = gate(capsys, "--only", "regress")
    assert code == 1 and "FAIL: regress" in " ".join(row(out, "deep_tanh"))


def test_the_base_is_chosen_as_a_ci_service_would(repo, capsys, monkeypatch):
    first = repo.commit(BASELINE, "start")
    second = repo.commit(scaled(BASELINE, "ae", 0.99), "main moves on")
    repo.git("update-ref", "refs/remotes/origin/main", second)
    # on main itself (origin/main is HEAD): the results before HEAD's last change to them
    assert "against base " + first[:7] in gate(capsys, "--only", "regress")[1]
    # a pull request: a branch origin/main does not contain, compared with its merge-base
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(scaled(BASELINE, "deep_relu", 1.05), "on the branch")
    repo.commit(message="more on the branch", **{"README.md": "x\n"})
    code, out = gate(capsys, "--only", "regress")
    assert code == 1 and f"base {second[:7]} (the merge-base with origin/main" in out
    # what a CI service hands a pull request, and what a person names, win in that order
    monkeypatch.setenv(history.BASE_ENV, first)
    assert f"base {first[:7]} ($GATE_BASE" in gate(capsys, "--only", "regress")[1]
    assert f"base {second[:7]} (--base main)" in gate(capsys, "--only", "regress", "--base", "main")[1]


def test_a_shallow_clone_and_a_first_commit_say_what_they_skipped(repo, capsys, tmp_path, monkeypatch):
    repo.commit(BASELINE, "the first results")
    code, out = gate(capsys, "--only", "regress")
    assert code == 0 and "regress: SKIPPED" in out and "first commit" in out
    repo.commit(scaled(BASELINE, "ae", 1.2), "worse")
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", repo.root.as_uri(), str(clone)], check=True, timeout=60)
    (clone / ".dvc").mkdir(exist_ok=True)
    monkeypatch.chdir(clone)
    code, out = gate(capsys, "--only", "regress")
    assert code == 0 and "regress: SKIPPED: a shallow clone" in out and "fetch-depth: 0" in out


def test_an_experiment_against_main(repo, capsys):
    main = repo.commit(BASELINE, "main")
    repo.git("checkout", "-q", "--detach")
    exp = repo.commit(scaled(BASELINE, "deep_leaky_relu", 1.06), "an experiment's commit")
    repo.git("update-ref", f"refs/exps/{main[:2]}/{main[2:]}/lr-small", exp)  # where DVC keeps it
    repo.git("checkout", "-q", "main")
    code, out = gate(capsys, "--base", "main", "--current", "lr-small")
    assert code == 1 and f"regress: lr-small {exp[:7]} against base {main[:7]}" in out
    assert "reproduce" not in out and row(out, "codec")[3:5] == ["lr-smal", exp[:7]]  # committed results only
    assert "FAIL: regress" in " ".join(row(out, "deep_leaky_relu"))


def test_a_codec_the_change_dropped_is_a_row_that_fails(repo, capsys):
    repo.commit(BASELINE, "start")
    dropped = {k: v for k, v in BASELINE.items() if k != "deep_tanh"}
    repo.commit(dropped, "no tanh any more")
    code, out = gate(capsys, "--only", "regress")
    cells = row(out, "deep_tanh")
    assert code == 1 and cells[2] == "-" and "FAIL: regress" in " ".join(cells), out
    assert "missing (regress): deep_tanh and its 14 checks: the results lack it" in out  # one note, not 14


def test_the_fresh_run_must_reproduce_and_no_acceptance_excuses_it(repo, capsys):
    repo.commit(BASELINE, "start")
    worse = scaled(BASELINE, "ae", 1.05)
    (repo.root / history.DETAIL).write_text(json.dumps(worse))  # what the code makes now
    code, out = gate(capsys)
    assert code == 1 and "FAIL: reproduce" in " ".join(row(out, "ae"))
    code, out = accept(capsys, "no")
    assert code == 2 and "commit the results first" in out and not repo.accepted.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base", "nosuch"], "unknown revision 'nosuch'"),
        (["--base", "HEAD~1"], "has no reports/metrics_detail.json"),
        (["--current", "x", "--only", "reproduce"], "reproduce compares the workspace"),
    ],
)
def test_bad_revisions_are_one_clear_line(repo, capsys, args, message):
    repo.commit(message="no results yet", **{"README.md": "x\n"})
    repo.commit(BASELINE, "results")
    code, out = gate(capsys, *args)
    assert code == 2 and message in out and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accepted: [", "not valid YAML"),
        ("accepted:\n  - results: 0123456789abcdef\n", ":2: 'accepted[0].date' is missing; expected a date"),
        (
            "accepted:\n  - results: 0123456789abcdef\n    date: 2026-12-07\n    reason: ''\n    regressions: []\n",
            ":4: 'accepted[0].reason' = '' is not allowed; expected a text that says why",
        ),
        (
            (
                "accepted:\n  - results: 0123456789abcdef\n    date: 2026-12-07\n    reason: ok\n    regressions:\n"
                "      - {metric: deep_relu.msee, base: 0123456789abcdef, change: '+1%'}\n"
            ),
            ":6: 'accepted[0].regressions[0].metric' = 'deep_relu.msee' is not allowed; expected a metric a rule",
        ),
        (
            "accepted:\n  - results: 12\n    date: 2026-12-07\n    reason: ok\n    regressions: []\n",
            ":2: 'accepted[0].results' = 12 is",
        ),
        ("acepted: []\n", "unknown key 'acepted'"),
    ],
)
def test_a_malformed_acceptance_file_is_an_error_naming_the_line(repo, capsys, text, message):
    repo.commit(BASELINE, "results")
    repo.accepted.write_text(text)
    code, out = gate(capsys, "--only", "regress")
    assert code == 2 and message in out and acceptance.FILENAME in out, out
    code, out = accept(capsys, "a reason")
    assert code == 2 and repo.accepted.read_text() == text  # nothing written


def test_outside_git_the_gate_says_it_needs_history(tmp_path, capsys, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    shutil.copy(REPO / "metrics_gate.yaml", tmp_path / "metrics_gate.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    code, out = gate(capsys)
    assert code == 2 and "is not in a git repository" in out and len(out.strip().splitlines()) == 1


def test_an_empty_reason_writes_nothing(repo, capsys):
    repo.commit(BASELINE, "start")
    repo.commit(scaled(BASELINE, "ae", 1.1), "worse")
    for reason in ("", "   "):
        code, out = accept(capsys, reason)
        assert code == 2 and "the reason is empty" in out and not repo.accepted.exists()


def test_a_stale_acceptance_is_named_and_accepts_nothing(repo, capsys):
    main = repo.commit(BASELINE, "main")
    repo.git("update-ref", "refs/remotes/origin/main", main)
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(scaled(BASELINE, "deep_relu", 1.05), "worse")
    assert accept(capsys, "slower but steadier")[0] == 0
    repo.commit(message="accepted")
    assert gate(capsys, "--only", "regress")[0] == 0
    repo.commit(scaled(BASELINE, "deep_relu", 1.06), "worse again, on the same branch")
    code, out = gate(capsys, "--only", "regress", "--report", "report.md")
    assert code == 1 and "stale: metrics_accepted.yaml line" in out and "deep_relu.mse: accepted for results" in out
    report = (repo.root / "report.md").read_text()
    assert "stale:" in report and len(report.splitlines()) <= 30


def test_the_report_fits_30_lines_and_the_terminal_120_columns(repo, capsys):
    repo.commit(BASELINE, "start")
    assert accept(capsys, "the starting point")[0] == 0
    repo.commit(message="accepted")
    worse = scaled(BASELINE, "ae", 0.995)
    repo.commit(worse, "a small step: the base is no longer the accepted results")
    for codec in ("ae", "deep_relu", "deep_tanh", "deep_leaky_relu"):
        worse = scaled(worse, codec, 1.08)
        worse[codec]["mse_digit"]["3"] = summarize([v * 1.5 for v in worse[codec]["mse_digit"]["3"]["per_seed"]])
    repo.commit(worse, "every autoencoder worse")
    code, out = gate(capsys, "--report", "report.md")
    assert code == 1 and max(len(line) for line in out.splitlines()) <= 120, out
    report = (repo.root / "report.md").read_text()
    assert len(report.splitlines()) <= 30 and "**Gate: FAILED" in report
    assert "| Deep AE (ReLU) |" in report and "**FAIL: regress, drift**" in report
    assert "`ae.mse_digit.3`" in report  # a failed check beyond the headline, named


def test_the_verdict_is_logged_on_the_evaluate_run_of_head(repo, capsys, monkeypatch):
    import mlflow

    head = repo.commit(BASELINE, "start")
    uri = f"sqlite:///{repo.root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("mnist-codec")
    tags = {"mnist_codec.stage": "evaluate", "mnist_codec.dvc_exp": "workspace"}
    older = client.create_run(exp, tags={**tags, "mnist_codec.git_commit": "0" * 40}).info.run_id
    # DVC's loop: the run that wrote the results ran before they were committed, on the commit before
    made = client.create_run(exp, tags={**tags, "mnist_codec.results": digest(BASELINE)}).info.run_id
    code, out = gate(capsys)
    assert code == 0 and f"verdict logged on the evaluate run {made}" in out
    # a run of HEAD itself (CI's: `make repro`, then the gate) is the one judged
    run = client.create_run(exp, tags={**tags, "mnist_codec.git_commit": head}).info.run_id
    code, out = gate(capsys)
    assert code == 0 and f"verdict logged on the evaluate run {run}" in out
    got = client.get_run(run).data.tags
    assert got["mnist_codec.gate"] == "passed" and got["mnist_codec.gate.regress"] == "skipped"
    assert got["mnist_codec.gate.reproduce"] == "passed" and got["mnist_codec.gate.results"] == digest(BASELINE)
    assert "gate.md" in [a.path for a in client.list_artifacts(run)]
    assert "mnist_codec.gate" not in client.get_run(older).data.tags


def test_the_acceptance_of_main_names_the_committed_results():
    accepted = acceptance.load(REPO / acceptance.FILENAME, RULES)
    assert accepted.latest is not None
    digests = {digest(json.loads(t)) for t in _committed_versions()}
    assert all(a.results in digests for a in accepted.acceptances)  # each names results in history
    v = verdict.ask(REPO, RULES, None, only="regress", current="HEAD")
    assert v.passed, verdict.format_terminal(v)


def _committed_versions() -> list[str]:
    log = subprocess.run(
        ["git", "log", "--format=%H", "--", history.DETAIL], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        subprocess.run(["git", "show", f"{sha}:{history.DETAIL}"], cwd=REPO, capture_output=True, text=True).stdout
        for sha in log
    ]
