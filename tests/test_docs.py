"""The README stays true: its results and stage graph match what the repo produces."""

import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_readme_results_table_is_the_committed_comparison():
    readme = (REPO / "README.md").read_text()
    committed = _table_rows((REPO / "reports" / "comparison.md").read_text())
    section = readme.split("<!-- results:holdout -->", 1)[1].split("<!--", 1)[0]
    assert _table_rows(section)[: len(committed)] == committed


def test_readme_stage_graph_is_dvc_dag():
    dvc = Path(sys.executable).parent / "dvc"
    dag = subprocess.run([str(dvc), "dag", "--md"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert dag.strip() in (REPO / "README.md").read_text()


def test_readme_names_every_stage_in_order():
    stages = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert " → ".join(stages) in (REPO / "README.md").read_text()


def test_readme_shows_the_committed_rate_distortion_curve():
    readme = (REPO / "README.md").read_text()
    committed = (REPO / "reports" / "rate_distortion.md").read_text()
    section = readme.split("<!-- results:rate-distortion -->", 1)[1].split("<!--", 1)[0]
    assert _table_rows(section) == _table_rows(committed)
    sentence = committed.strip().splitlines()[-1]  # where the autoencoders stop beating PCA, if they do
    assert sentence in section.replace("\n", " ")
    assert "![" in section and "(reports/rate_distortion.png)" in section


def test_readme_gives_the_committed_frontier_record_and_its_command():
    import json
    import shlex

    from mnist_codec.experiments import frontier

    rec = json.loads((REPO / "reports" / "frontier.json").read_text())
    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- results:frontier -->", 1)[1].split("<!--", 1)[0]
    assert frontier.markdown(rec) in section
    # the record is what this code runs: the chosen candidate's overrides, no others
    assert rec["command"] == "make frontier" and "frontier:" in (REPO / "Makefile").read_text()
    assert shlex.split(rec["experiment_command"]) == frontier.exp_run_command(
        frontier.NAME, frontier.CANDIDATES[rec["selection"]["chosen"]])
    assert [c["name"] for c in rec["selection"]["candidates"]] == list(frontier.CANDIDATES)
    assert rec["protocol"] == "holdout" and rec["code_size"] == 32 and rec["n_seeds"] >= 3
    assert rec["meets_target"] == (rec["test_mse"] <= rec["target_mse"] == frontier.TARGET_MSE)


def test_the_committed_dvc_lock_and_reports_were_made_by_this_code():
    """Every code dep in dvc.lock has the hash of the file as committed: the reports in git
    come from this code (after an edit of a stage's code, `make repro` and commit them)."""
    import hashlib

    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    stale = []
    for name, stage in lock["stages"].items():
        for dep in stage["deps"]:
            path = REPO / dep["path"]
            if dep["path"].startswith(("src/", "stages/")) and path.is_file():
                if hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]:
                    stale.append(f"{name}: {dep['path']}")
    assert not stale, f"dvc.lock predates these files (run `make repro` and commit): {stale}"
