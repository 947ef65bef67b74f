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
