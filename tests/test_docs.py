"""The README and the docs stay true: they show what the repo produces, and the site builds."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_the_readme_is_short_and_its_table_is_the_one_make_repro_wrote():
    from mnist_codec import readme

    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    block = text.split(readme.START, 1)[1].split(readme.END, 1)[0].strip()
    assert block == readme.headline((REPO / "reports/comparison.md").read_text()), (
        "README.md's table is not reports/comparison.md's: run `make repro` (or `mnist-codec readme`)"
    )
    assert _table_rows(block)


def test_the_readme_command_rewrites_the_table_between_its_markers(tmp_path):
    from mnist_codec import readme
    from mnist_codec.errors import DataError

    page, table = tmp_path / "README.md", tmp_path / "comparison.md"
    page.write_text(f"intro\n{readme.START}\nstale\n{readme.END}\nrest\n")
    table.write_text("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert readme.update(page, table) and not readme.update(page, table)
    assert page.read_text() == f"intro\n{readme.START}\n| a | b |\n|---|---|\n| 1 | 2 |\n{readme.END}\nrest\n"
    page.write_text("no markers\n")
    with pytest.raises(DataError, match="markers"):
        readme.update(page, table)
    assert page.read_text() == "no markers\n"


def test_the_pipeline_page_shows_dvc_dag_and_every_stage_in_order():
    dvc = Path(sys.executable).parent / "dvc"
    dag = subprocess.run([str(dvc), "dag", "--md"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    page = (REPO / "docs/pipeline.md").read_text()
    assert dag.strip() in page
    stages = " → ".join(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert stages in page and stages in (REPO / "README.md").read_text()


def test_the_layout_map_names_every_module_of_the_package_where_it_lives():
    """docs/pipeline.md's map of src/mnist_codec matches the tree: each module is named on its
    package's lines (a top-level module at the top level), and no name there is gone."""
    text = (REPO / "docs" / "pipeline.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("src/mnist_codec/"))
    entries: dict[str, str] = {}  # "codecs/" or "" (the top level) -> the text of its lines
    key = ""
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        head = line[2:].split("  ", 1)[0].strip()
        if line[2] != " " and head.endswith("/"):
            key = head
        elif line[2] != " ":
            key = ""
        entries[key] = entries.get(key, "") + " " + (line if key else head)
    package = REPO / "src" / "mnist_codec"
    missing = []
    for module in sorted(package.rglob("*.py")):
        rel = module.relative_to(package)
        if rel.name == "__init__.py" and len(rel.parts) > 1:
            continue
        where = "" if len(rel.parts) == 1 else rel.parts[0] + "/"
        if rel.name not in entries.get(where, ""):
            missing.append(str(rel))
    assert not missing, f"docs/pipeline.md's map does not name {missing}"
    named = {k for k in entries if k and not k.startswith("datasets/")}  # the bundled data: no code
    assert named == {p.name + "/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def test_every_page_is_in_the_nav_and_every_readme_link_exists():
    import re

    config = (REPO / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert pages and all(f": {p}" in config for p in pages), pages
    links = re.findall(r"\]\((docs/[^)#]+)", (REPO / "README.md").read_text())
    assert links and all((REPO / link).is_file() for link in links), links


def test_every_params_key_has_a_meaning_for_the_reference():
    from mnist_codec import params

    rows = params.reference()
    assert [r["key"] for r in rows] == list(params.SCHEMA)
    assert all(len(r["meaning"]) > 10 and r["accepts"] for r in rows), [r["key"] for r in rows if not r["meaning"]]


def test_the_docs_site_builds_strictly_with_the_reports_included(tmp_path):
    """`make docs`: every page builds with --strict; results come from reports/ as they are."""
    import html
    import json

    from mnist_codec import params
    from mnist_codec.experiments import frontier

    mkdocs = Path(sys.executable).parent / "mkdocs"
    site = tmp_path / "site"
    proc = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    def page(name: str) -> str:
        return html.unescape((site / name / "index.html").read_text())

    results = page("results")
    for report in ("reports/comparison.md", "reports/rate_distortion.md", "reports/protocols/notebook.md"):
        for row in _table_rows((REPO / report).read_text())[2:]:
            assert row.split("|")[1].strip() in results, (report, row)
    rec = json.loads((REPO / "reports/frontier.json").read_text())
    assert f"{rec['test_mse']:.6f}" in results and frontier.markdown(rec).split("**")[1] in results
    for png in [
        "reports/rate_distortion.png",
        *sorted(str(p.relative_to(REPO)) for p in (REPO / "reports/figures").glob("*.png")),
    ]:
        assert (site / png).read_bytes() == (REPO / png).read_bytes() and png in results
    reference = page("params")
    assert all(f"<code>{key}</code>" in reference for key in params.SCHEMA)
    assert "Benchmarks: the pipeline side by side" in page("benchmarks")


def test_the_committed_frontier_record_is_what_this_code_runs():
    import json
    import shlex

    from mnist_codec.experiments import frontier
    from mnist_codec.tuning import proof, space

    rec = json.loads((REPO / "reports" / "frontier.json").read_text())
    assert rec["protocol"] == "holdout" and rec["code_size"] == 32 and rec["n_seeds"] >= 3
    if rec["command"] == "make tune":  # the search's winner: tune.yaml's search, its winner's overrides
        spec = space.load(REPO / "tune.yaml", yaml.safe_load((REPO / "params.yaml").read_text()))
        s = rec["selection"]["search"]
        assert s["study"] == spec.study and {k: s[k] for k in ("space", "fixed", "budget", "asha")} == spec.describe()
        full = [t for t in s["table"] if t["epochs"] >= spec.max_epochs]
        best = min(full, key=lambda t: t["validation_mse"])
        assert s["winner"]["optuna_trial"] == best["optuna_trial"] and s["winner"]["searched"] == best["searched"]
        assert s["trials"] == len(s["table"]) and s["asha_stopped"] == sum(
            t["ended"].startswith("asha stopped") for t in s["table"]
        )
        assert shlex.split(rec["experiment_command"]) == frontier.exp_run_command(
            proof.NAME, proof.overrides(spec, best["searched"], rec["precision"]["test run"])
        )
        assert rec["replaces"]["command"] == "make frontier"
        assert rec["interval_below_replaced"] == (rec["test_mse_ci95"][1] < rec["replaces"]["test_mse_ci95"][0])
        assert rec["meets_target"] == (rec["test_mse"] <= rec["target_mse"] == proof.TARGET_MSE)
        return
    # make frontier's: the chosen candidate's overrides, no others
    assert rec["command"] == "make frontier" and "frontier:" in (REPO / "Makefile").read_text()
    assert shlex.split(rec["experiment_command"]) == frontier.exp_run_command(
        frontier.NAME, frontier.CANDIDATES[rec["selection"]["chosen"]]
    )
    assert [c["name"] for c in rec["selection"]["candidates"]] == list(frontier.CANDIDATES)
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
            code = dep["path"].startswith(("src/", "stages/")) and path.is_file()
            if code and hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]:
                stale.append(f"{name}: {dep['path']}")
    assert not stale, f"dvc.lock predates these files (run `make repro` and commit): {stale}"
