"""The rate–distortion report: PCA's exact curve, collecting the sweep's experiments from
``dvc.api.exp_show``, the table's sentence, and the files it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_codec.codecs import pca
from mnist_codec.data import prepare
from mnist_codec.errors import DataError
from mnist_codec.experiments import sweep


def test_pcas_curve_from_one_fit_is_each_sizes_own_fit(digits):
    x = digits[0]
    train_x, eval_x = x[:300], x[300:]
    curve = sweep.pca_curve(train_x, eval_x, 20)
    assert curve.shape == (20,) and np.all(np.diff(curve) <= 1e-12)  # more numbers, less error
    for k in (1, 4, 20):
        codec = pca.pca_codec_from_arrays(
            **{n: a for n, a in pca.fit(train_x, k).items() if n != "explained_variance_ratio"}
        )
        import torch

        recon = codec(torch.from_numpy(eval_x)).numpy()
        assert curve[k - 1] == pytest.approx(float(np.mean((recon - eval_x) ** 2)), rel=1e-4)


def _metrics(ae: float, deep: float, pca_mse: float) -> dict:
    def m(v, n=3):
        return {
            "mse": {"mean": v, "ci95_low": v * 0.9, "ci95_high": v * 1.1, "n": n, "std": v / 20, "per_seed": [v] * n}
        }

    return {"pca": m(pca_mse, 1), "ae": m(ae), "deep_relu": m(deep)}


def _row(name: str | None, k: int, metrics: dict | None, typ: str = "branch_commit", state: str | None = "Success"):
    """One row as ``dvc.api.exp_show`` gives it: flat params and metrics columns (lists left out)."""
    row = {
        "Experiment": name,
        "rev": f"{abs(hash(name)) % 10**7:07d}",
        "typ": typ,
        "Created": "Nov 27, 2026",
        "parent": "",
        "State": state,
        "Executor": "Dvc-task" if state else None,
        "latent_dim": float(k),
        "seed": 42.0,
        "data.protocol": "holdout",
        "data/processed": "f51f2415b6d728a24bdccd8220c0abf4.dir",
    }
    for codec, m in (metrics or {}).items():
        s = m["mse"]  # metrics.json's headline columns
        row.update({f"{codec}.mse": s["mean"], f"{codec}.mse_ci95": (s["ci95_high"] - s["ci95_low"]) / 2})
        row.update({f"{codec}.n_seeds": s["n"], f"{codec}.psnr": 20.0})
    return row


def _exp_show(
    rows: dict[str, tuple[int, dict | None]],
    running: tuple[str, ...] = (),
    older: dict[str, tuple[int, dict]] | None = None,
) -> list[dict]:
    """Rows of ``dvc.api.exp_show(num=-1)``: HEAD's baseline and its experiments newest first
    (the last one pulled from a remote: no executor), then an earlier commit's."""
    out = [_row(None, 32, _metrics(0.9, 0.9, 0.9), typ="baseline", state=None)]
    for i, (name, (k, metrics)) in enumerate(rows.items()):
        state = "Running" if name in running else ("Success" if i < len(rows) - 1 else None)
        out.append(_row(name, k, metrics, state=state))
    out.append(_row(None, 32, None, typ="baseline", state=None))
    out += [_row(n, k, m) for n, (k, m) in (older or {}).items()]
    columns = {k for r in out for k in r}
    return [{**dict.fromkeys(columns, "None"), **r} for r in out]  # every row has every column; missing: 'None'


def test_collect_takes_the_sweeps_experiments_with_results_only():
    exp = _exp_show(
        {
            "rd-2": (2, _metrics(0.05, 0.04, 0.055)),
            "rd-8": (8, _metrics(0.03, 0.02, 0.035)),
            "rd-16": (16, None),  # queued or failed: no metrics
            "rd-32": (32, _metrics(0.01, 0.01, 0.02)),  # still running: the baseline's metrics
            "tanh-try": (32, _metrics(0.01, 0.01, 0.02)),  # not part of the sweep
            "rd-64": (64, _metrics(0.004, 0.003, 0.006)),
        },  # pulled from a remote
        running=("rd-32",),
        older={"rd-8": (8, _metrics(0.9, 0.9, 0.9))},
    )  # an earlier sweep's
    points = sweep.collect(exp)
    assert sorted({(p.codec, p.size) for p in points}) == [
        (c, k) for c in ("ae", "deep_relu", "pca") for k in (2, 8, 64)
    ]
    ae8 = next(p for p in points if p.codec == "ae" and p.size == 8)
    assert (ae8.mean, ae8.low, ae8.high, ae8.n, ae8.experiment) == pytest.approx(
        (0.03, 0.03 * 0.9, 0.03 * 1.1, 3, "rd-8")
    )


def test_the_sentence_says_where_autoencoders_stop_beating_pca():
    exp = _exp_show({"rd-2": (2, _metrics(0.05, 0.04, 0.055)), "rd-8": (8, _metrics(0.03, 0.02, 0.035))})
    points = sweep.collect(exp)
    curve = np.linspace(0.06, 0.001, 128)
    curve[1], curve[7] = 0.055, 0.035
    text = sweep.table(points, curve, sweep.display_names(points))
    assert (
        "At every code size from 2 to 8 an autoencoder beats PCA. Each beats PCA (by its mean): AE (1 layer) at 2–8; "
        "Deep AE (ReLU) at 2–8."
    ) in text
    curve[7] = 0.019  # PCA better at 8
    text = sweep.table(points, curve, sweep.display_names(points))
    assert (
        "From 8 numbers on, no autoencoder beats PCA (at 8: PCA 0.019000, the best autoencoder 0.020000). "
        "Each beats PCA (by its mean): AE (1 layer) at 2; Deep AE (ReLU) at 2."
    ) in text
    assert sweep._ranges([2, 4, 8, 32, 128], [2, 4, 8, 16, 32, 64, 128]) == "2–8, 32, 128"
    assert "| 2 | 0.055000 | 0.050000 ± 0.005000 | 0.040000 ± 0.004000 |" in text
    assert text.splitlines()[0] == "| code size | PCA (exact) | AE (1 layer) | Deep AE (ReLU) |"


def test_the_report_writes_figure_table_and_csv_from_the_workspaces_splits(raw_dir, tmp_path):
    prepare.preprocess(raw_dir, tmp_path / "processed", "holdout")
    exp = _exp_show({"rd-2": (2, _metrics(0.05, 0.04, 0.055)), "rd-4": (4, _metrics(0.03, 0.02, 0.035))})
    out = tmp_path / "reports"
    points = sweep.report(exp, tmp_path / "processed", out / "rd.png", out / "rd.md", out / "rd.csv")
    assert len(points) == 6
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "rd.csv").read_text().splitlines()
    assert rows[0].startswith("codec,code_size,mse_mean") and any(r.startswith("pca_exact,128,") for r in rows)
    import pandas as pd

    table = pd.read_csv(out / "rd.csv")  # every number a number (PCA's rows once read 'np.float64(...)')
    assert all(table[c].dtype == float for c in ("mse_mean", "mse_ci95_low", "mse_ci95_high"))
    assert "| 4 |" in (out / "rd.md").read_text()
    with pytest.raises(DataError, match="no sweep results: no experiment named rd-<code size>"):
        sweep.report(_exp_show({}), tmp_path / "processed", out / "a.png", out / "a.md", out / "a.csv")


def test_the_command_reads_exp_show_rows(raw_dir, tmp_path):
    prepare.preprocess(raw_dir, tmp_path / "data" / "processed", "holdout")
    (tmp_path / ".dvc").mkdir()
    exp_json = tmp_path / "exp.json"
    exp_json.write_text(json.dumps(_exp_show({"rd-2": (2, _metrics(0.05, 0.04, 0.055))})))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mnist-codec"), "sweep-report", "--exp-json", str(exp_json)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sweep-report: 1 experiments, code sizes [2]" in proc.stdout
    assert (tmp_path / "reports" / "rate_distortion.png").is_file()


@pytest.mark.full
def test_make_sweep_runs_the_queue_and_reports_every_size(tmp_path):
    """`make sweep` for real on a tiny profile, from a clone with no outputs: two queued
    experiments, DVC's queue with two workers at once on one MLflow store, the report (PCA's
    curve on the workspace's splits). The two workers lose no run and no metric point (this
    test holds what tests/faults/test_dvc_faults.py's queued sweep held)."""
    from conftest import TINY, project_copy, project_env, store_runs

    repo = project_copy(tmp_path / "repo", TINY)
    stamp = tmp_path / "installed"  # this environment is installed: make must not reinstall into it
    stamp.touch()
    try:
        proc = subprocess.run(
            ["make", "sweep", f"VENV={sys.prefix}", f"STAMP={stamp}", "SWEEP_SIZES=2 4", "SWEEP_JOBS=2"],
            cwd=repo,
            env=project_env(repo),
            capture_output=True,
            text=True,
            timeout=1200,
        )
    finally:  # the queue's worker goes with the test
        subprocess.run(
            ["dvc", "queue", "stop", "--kill"], cwd=repo, env=project_env(repo), capture_output=True, timeout=120
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Queued experiment 'rd-2'" in proc.stdout + proc.stderr
    assert "sweep-report: 2 experiments, code sizes [2, 4]" in proc.stdout
    table = (repo / "reports" / "rate_distortion.md").read_text()
    assert table.splitlines()[0] == "| code size | PCA (exact) | AE (1 layer) | Deep AE (ReLU) |"
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:4]] == ["2", "4"]
    rows = (repo / "reports" / "rate_distortion.csv").read_text().splitlines()
    assert sum(r.startswith(("ae,", "deep_relu,", "pca,")) for r in rows) == 6
    # two workers at once on one store: every run of both experiments there, ended, each curve whole
    runs, client = store_runs(repo)
    assert {r.info.status for r in runs} == {"FINISHED"}
    by = {}
    for r in runs:
        by.setdefault((r.data.tags["mnist_codec.dvc_exp"], r.data.tags["mnist_codec.stage"]), []).append(r)
    for exp in ("rd-2", "rd-4"):  # a codec's parent run with a child per seed (2), and one evaluate run
        assert {s: len(by.get((exp, s), [])) for s in ("train_ae", "train_deep", "evaluate")} == {
            "train_ae": 3,
            "train_deep": 3,
            "evaluate": 1,
        }, sorted(by)
    seeds = [r for r in runs if "mlflow.parentRunId" in r.data.tags and r.data.tags["mnist_codec.stage"] != "pca"]
    assert len(seeds) == 8
    for r in seeds:
        for metric in ("train_loss", "eval_loss"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, metric)] == [1, 2]


def _reader(monkeypatch, script: str) -> None:
    """Make each read of the experiments run ``script`` (Python) as its child process."""
    import sys

    from mnist_codec.experiments import exps

    monkeypatch.setattr(exps, "_child_command", lambda repo: [sys.executable, "-c", script, str(repo)])


def test_a_read_that_meets_a_workspace_going_away_is_tried_again(monkeypatch, tmp_path):
    """While the queue runs, an experiment's temporary workspace can vanish as DVC reads it:
    the read fails in its child process and is tried again."""
    from mnist_codec.experiments import exps

    count = tmp_path / "reads"
    _reader(
        monkeypatch,
        f"""
import json, pathlib, sys
count = pathlib.Path({str(count)!r})
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
if n < 3:
    sys.exit("directory '" + sys.argv[1] + "/.dvc/tmp/exps/tmpx/.dvc' does not exist")
print(json.dumps([{{"Experiment": "rd-2", "typ": "branch_commit", "State": "Success"}}]))
""",
    )
    assert exps.show(tmp_path, pause=0)[0]["Experiment"] == "rd-2" and count.read_text() == "3"
    _reader(monkeypatch, "import sys; sys.exit('broken')")
    with pytest.raises(DataError, match=r"dvc exp show failed in .* \(2 tries\): broken$"):
        exps.show(tmp_path, tries=2, pause=0)


def test_a_read_that_hangs_is_killed_and_tried_again(monkeypatch, tmp_path):
    """A read that never answers (pygit2's reader thread can die during the queue's writes and
    leave the read waiting forever) is killed by its PID after the timeout and tried again."""
    import os
    import time

    from mnist_codec.experiments import exps

    pids = tmp_path / "pids"
    _reader(
        monkeypatch,
        f"""
import os, time
with open({str(pids)!r}, "a") as f:
    f.write(str(os.getpid()) + "\\n")
time.sleep(120)
""",
    )
    start = time.monotonic()
    with pytest.raises(DataError, match=r"\(2 tries\): no answer in 1 s \(the read was killed\)"):
        exps.show(tmp_path, tries=2, pause=0, timeout=1)
    assert time.monotonic() - start < 30
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_read_prints_dvcs_rows_as_json_or_its_error_as_one_line(monkeypatch, capsys, tmp_path):
    """The child process: rows as JSON on stdout (dates as text), or DVC's error on stderr."""
    import datetime

    from dvc.exceptions import DvcException

    from mnist_codec.experiments import exps

    when = datetime.datetime(2026, 12, 1, 20, 0)
    monkeypatch.setattr(exps, "read_rows", lambda repo: [{"Experiment": "rd-2", "Created": when, "rev": "abc"}])
    assert exps._main([str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == [{"Experiment": "rd-2", "Created": str(when), "rev": "abc"}]

    def broken(repo):
        raise DvcException(f"'{repo}' is not a DVC repository")

    monkeypatch.setattr(exps, "read_rows", broken)
    assert exps._main([str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"'{tmp_path}' is not a DVC repository\n"
