"""Which committed results the gate reads: a revision, the base before a change, results by digest.

One small repository, built once for the module, holds the history every case needs:

    c1 (no results) - c2 (R1) - c3 (other files) - c4 (R2)  = main = origin/main, tag v1 at c2
                                                     \\- c5 (R3) = feature, and DVC experiment `exp` (baseline c4)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mnist_codec.errors import GateError
from mnist_codec.evaluation import history
from mnist_codec.evaluation.digest import digest
from mnist_codec.evaluation.history import Git, Revision

R1, R2, R3 = ({"ae": {"mse": {"mean": m, "std": 0.0, "n": 1}}} for m in (0.1, 0.2, 0.3))
ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@mnist-codec.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@mnist-codec.invalid",
}


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env={**os.environ, **ENV})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def commit(root: Path, results: dict | None = None, **files: str) -> str:
    if results is not None:
        (root / "reports").mkdir(exist_ok=True)
        (root / history.DETAIL).write_text(json.dumps(results))
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", "step")
    return git(root, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("history")
    git(root, "init", "-q", "-b", "main")
    c = {"c1": commit(root, README="a"), "c2": commit(root, R1), "c3": commit(root, README="b"), "c4": commit(root, R2)}
    git(root, "tag", "v1", c["c2"])
    git(root, "update-ref", "refs/remotes/origin/main", c["c4"])
    git(root, "checkout", "-q", "-b", "feature")
    c["c5"] = commit(root, R3)
    base = c["c4"]
    git(root, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/exp", c["c5"])
    git(root, "checkout", "-q", "main")
    return root, c


@pytest.fixture(autouse=True)
def no_base_env(monkeypatch):
    monkeypatch.delenv(history.BASE_ENV, raising=False)


def test_a_revision_is_a_commit_branch_tag_or_experiment(repo):
    root, c = repo
    g = Git(root)
    assert history.resolve(g, c["c2"]) == Revision(c["c2"], c["c2"])
    assert history.resolve(g, "feature") == Revision("feature", c["c5"])
    assert history.resolve(g, "v1").sha == c["c2"]  # a tag, peeled to its commit
    assert history.resolve(g, "exp") == Revision("exp", c["c5"])
    assert history.resolve(g, "HEAD").short == c["c4"][:7]
    with pytest.raises(GateError, match=r"^gate: unknown revision 'nosuch': not a commit, a branch, a tag or a DVC"):
        history.resolve(g, "nosuch")


def test_experiments_are_read_from_dvcs_refs(repo):
    root, c = repo
    assert history.experiment_commits(Git(root), "exp") == [(c["c5"], c["c4"])]
    assert history.experiment_commits(Git(root), "feature") == []  # a branch is not an experiment


def test_one_experiment_name_on_several_baselines(tmp_path, repo):
    root, c = repo
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    for base, sha in ((c["c2"], c["c2"]), (c["c3"], c["c3"])):
        git(clone, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/twice", sha)
    git(clone, "branch", "a/b/twice", c["c1"])  # a branch of the same depth is not an experiment
    with pytest.raises(GateError, match=rf"'twice' names 2 DVC experiments \(({c['c2'][:7]}|{c['c3'][:7]}), "):
        history.resolve(Git(clone), "twice")
    git(clone, "checkout", "-q", c["c3"])  # the one made from HEAD wins
    assert history.resolve(Git(clone), "twice").sha == c["c3"]


def test_results_at_a_revision_or_none(repo):
    root, c = repo
    g = Git(root)
    found = history.results_at(g, Revision("v1", c["c2"]), "base")
    assert found is not None and found.content == R1 and found.label == f"base {c['c2'][:7]}"
    assert found.rev == Revision("v1", c["c2"]) and found.digest == digest(R1)
    assert history.results_at(g, Revision("c1", c["c1"]), "base") is None
    assert history.read_named(g, "feature", "HEAD").content == R3
    with pytest.raises(GateError, match=f"^gate: {c['c1']} \\({c['c1'][:7]}\\) has no reports/metrics_detail.json"):
        history.read_named(g, c["c1"], "base")


def test_on_main_the_base_is_the_results_before_their_last_change(repo):
    root, c = repo
    g = Git(root)
    choice = history.choose_base(g, Revision("HEAD", c["c4"]))
    assert choice.results is not None and choice.results.content == R1
    assert choice.how == f"the results before the last change to them, {c['c4'][:7]}"
    assert choice.results.rev == Revision(f"{c['c4'][:7]}^", c["c3"])
    # c3 changed no results: its base is still the results before c2's change, which has none
    first = history.choose_base(g, Revision("HEAD", c["c3"]))
    assert (
        first.results is None
        and first.how == f"reports/metrics_detail.json first appears in {c['c2'][:7]}: no earlier results"
    )
    none = history.choose_base(g, Revision("HEAD", c["c1"]))
    assert none.results is None and none.how == "no commit on HEAD's history holds reports/metrics_detail.json"


def test_on_a_branch_the_base_is_the_merge_base_with_origin_main(repo):
    root, c = repo
    choice = history.choose_base(Git(root), Revision("HEAD", c["c5"]))
    assert choice.results is not None and choice.results.content == R2
    assert choice.how == "the merge-base with origin/main"
    assert choice.results == history.Results(
        f"base {c['c4'][:7]}", R2, Revision("merge-base with origin/main", c["c4"])
    )


def test_a_named_base_comes_first_then_the_environment(repo, monkeypatch):
    root, c = repo
    g = Git(root)
    monkeypatch.setenv(history.BASE_ENV, " v1 ")
    env = history.choose_base(g, Revision("HEAD", c["c5"]))
    assert env.how == "$GATE_BASE (v1)" and env.results == history.Results(
        f"base {c['c2'][:7]}", R1, Revision("v1", c["c2"])
    )
    named = history.choose_base(g, Revision("HEAD", c["c5"]), "main")
    assert named.how == "--base main" and named.results is not None and named.results.content == R2
    monkeypatch.setenv(history.BASE_ENV, "nosuch")
    with pytest.raises(GateError, match=r"unknown revision 'nosuch'"):
        history.choose_base(g, Revision("HEAD", c["c5"]))
    monkeypatch.setenv(history.BASE_ENV, "  ")  # blank: not set
    assert history.choose_base(g, Revision("HEAD", c["c5"])).how == "the merge-base with origin/main"


def test_a_merge_base_without_results_is_a_skip(tmp_path, repo):
    root, c = repo
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    git(clone, "update-ref", "refs/remotes/origin/main", c["c1"])
    git(clone, "checkout", "-q", "-b", "side", c["c1"])
    head = commit(clone, R3)
    choice = history.choose_base(Git(clone), Revision("HEAD", head))
    assert (
        choice.results is None
        and choice.how == f"the merge-base with origin/main ({c['c1'][:7]}) has no reports/metrics_detail.json"
    )


def test_unrelated_histories_and_shallow_clones_say_what_they_lack(tmp_path, repo):
    root, c = repo
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    head = commit(other, R1)
    git(other, "fetch", "-q", str(root), "main:refs/remotes/origin/main")
    choice = history.choose_base(Git(other), Revision("HEAD", head))
    assert choice.results is None and choice.how == "HEAD and origin/main have no merge-base here (no common history)"
    first = history.choose_base(Git(other), Revision("HEAD", head))
    cut = tmp_path / "cut"  # a shallow clone of the branch, and of main: no merge-base between them here
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "feature", f"file://{root}", str(cut))
    git(cut, "fetch", "-q", "--depth", "1", "origin", "main:refs/remotes/origin/main")
    skipped = history.choose_base(Git(cut), Revision("HEAD", c["c5"]))
    assert skipped.results is None and skipped.how == "HEAD and origin/main have no merge-base here (a shallow clone)"
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{root}", str(shallow))
    g = Git(shallow)
    assert g.shallow() and not Git(root).shallow()
    skip = history.previous_version(g, Revision("HEAD", c["c4"]))
    assert skip.results is None and skip.how.startswith(
        f"a shallow clone: the history before {c['c4'][:7]} is not here"
    )
    single = tmp_path / "single"
    single.mkdir()
    git(single, "init", "-q", "-b", "main")
    only = commit(single, R1)
    alone = history.previous_version(Git(single), Revision("HEAD", only))
    assert alone.how == f"{only[:7]} is the first commit: no results before it" and first.results is None


def test_results_are_found_by_their_digest_on_any_ref(repo):
    root, c = repo
    g = Git(root)
    found = history.find_by_digest(g, digest(R3))  # only on the branch and the experiment
    assert found is not None and found.content == R3 and found.rev == Revision(c["c5"][:7], c["c5"])
    assert found.label == f"accepted {c['c5'][:7]}"
    assert history.find_by_digest(g, digest(R1)).content == R1
    assert history.find_by_digest(g, "0" * 16) is None


def test_a_deleted_or_broken_detail_file_is_passed_over(tmp_path):
    g = Git(tmp_path)
    git(tmp_path, "init", "-q", "-b", "main")
    commit(tmp_path, R1)
    (tmp_path / history.DETAIL).write_text("[1, 2]")
    commit(tmp_path)
    (tmp_path / history.DETAIL).write_text("{broken")
    commit(tmp_path)
    (tmp_path / history.DETAIL).unlink()
    commit(tmp_path)
    assert history.find_by_digest(g, digest(R1)).content == R1
    assert history.find_by_digest(g, digest([1, 2])) is None


def test_head_and_the_workspace_file(tmp_path, repo):
    root, c = repo
    assert history.head(Git(root)) == Revision("HEAD", c["c4"])
    with pytest.raises(GateError, match=f"^gate: {tmp_path} is not in a git repository: the gate compares committed"):
        history.head(Git(tmp_path))
    git(tmp_path, "init", "-q")
    with pytest.raises(GateError, match=r"^gate: this repository has no commit yet: commit the results first$"):
        history.head(Git(tmp_path))
    with pytest.raises(
        GateError,
        match=r"^gate: cannot read reports/metrics_detail.json: No such file or directory \(run `make repro`\)$",
    ):
        history.read_workspace(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / history.DETAIL).write_text(json.dumps(R1))
    fresh = history.read_workspace(tmp_path)
    assert (fresh.label, fresh.content, fresh.rev) == ("fresh run", R1, None)
    (tmp_path / history.DETAIL).write_text("[1]")
    with pytest.raises(GateError, match=r"^gate: reports/metrics_detail.json is not a JSON object of codecs$"):
        history.read_workspace(tmp_path)
    (tmp_path / history.DETAIL).write_text("{")
    with pytest.raises(GateError, match=r"^gate: reports/metrics_detail.json is not JSON: "):
        history.read_workspace(tmp_path)


def test_git_fails_with_one_clear_line(tmp_path, repo):
    root, c = repo
    g = Git(root)
    with pytest.raises(GateError, match=r"^gate: git cat-file -t nosuch failed: fatal: "):
        g.run("cat-file", "-t", "nosuch")
    assert g.run("cat-file", "-t", "nosuch", check=False).returncode != 0
    assert g.out("cat-file", "-t", "nosuch") is None and g.out("rev-parse", "HEAD") == c["c4"]
    assert g.commit("nosuch") is None and g.commit("v1") == c["c2"]
    assert g.is_ancestor(c["c2"], c["c4"]) and not g.is_ancestor(c["c5"], c["c4"])
    assert (
        g.show(c["c1"]) is None
        and json.loads(g.show(c["c2"])) == R1
        and g.show(c["c1"], "README") == "a"
        and g.show(c["c1"], "none") is None
    )
    assert Git(str(root)).root == root
    with pytest.raises(GateError, match=r"^gate: git config --get nosuch\.key failed: 1$"):  # exit 1, no words
        g.run("config", "--get", "nosuch.key")
    missing = Git(tmp_path / "gone")
    with pytest.raises(GateError, match=r"^gate: git status failed: "):
        missing.run("status")
