"""What a stage pays for: the evaluation sample of the training curves, and the timing
records the benchmark splits into each stage's own work and its fixed cost. (Which
libraries each stage imports is checked on a real ``dvc repro`` in test_pipeline_e2e.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_codec import timing
from mnist_codec.codecs import models, train
from mnist_codec.codecs.models import load
from mnist_codec.data import prepare, splits
from mnist_codec.params import validate
from mnist_codec.pipeline import train_ae as train_ae_stage
from mnist_codec.pipeline import training

from conftest import clean_env, write_raw_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("n", "step", "rows"),
    [(500, 1, 500), (2_000, 1, 2_000), (2_001, 2, 1001), (10_000, 5, 2_000), (70_000, 35, 2_000), (70_001, 36, 1945)],
)
def test_curve_rows_keep_a_small_split_whole_and_thin_a_large_one_evenly(n, step, rows):
    sl = training.curve_rows(n)
    assert sl.step == step and len(range(n)[sl]) == rows <= training.CURVE_IMAGES == 2_000


def test_under_the_notebook_protocol_curves_use_the_sample_and_final_mse_the_whole_split(tmp_path, monkeypatch):
    """Curves on every k-th image; the recorded final eval MSE (what the registry and the
    run's eval_mse carry) on all of them, as the model scores in a fresh evaluation."""
    (tmp_path / ".dvc").mkdir()
    raw = write_raw_dir(tmp_path / "data/raw", n_train=300, n_test=100)
    prepare.preprocess(raw, tmp_path / "data/processed", "notebook")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(training, "CURVE_IMAGES", 50)  # 400 images: every 8th, 50 of them
    seen = []
    real_fit = train.fit_many
    monkeypatch.setattr(
        train, "fit_many", lambda jobs, x, ex, **kw: seen.append(len(ex)) or real_fit(jobs, x, ex, **kw)
    )
    params = validate({"n_seeds": 1, "train": {"epochs": 2}, "data": {"protocol": "notebook"}})
    train_ae_stage.run(params, tmp_path / "data/processed", tmp_path / "models/ae", tmp_path / "reports/curves/ae")
    assert seen == [50]
    record = json.loads((tmp_path / "models/ae/seed0.json").read_text())
    assert record["curve_eval_images"] == 50
    model, _ = load(tmp_path / "models/ae/seed0.pt")
    import torch

    x, _ = splits.load_split(tmp_path / "data/processed", "eval")
    whole = models.reconstruction_mse(model, torch.from_numpy(x))
    assert record["final_eval_loss"] == pytest.approx(whole, rel=1e-6)
    sample = models.reconstruction_mse(model, torch.from_numpy(x[::8]))
    curve = (tmp_path / "reports/curves/ae/seed0.csv").read_text().splitlines()
    assert float(curve[-1].split(",")[2]) == pytest.approx(sample, rel=1e-5)
    assert sample != pytest.approx(whole, rel=1e-6)  # the two are different measurements


def test_work_sums_per_label_and_the_record_is_written_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(timing, "_work", {})
    with timing.work("fit"):
        pass
    with timing.work("fit"):
        sum(range(10_000))

    def failing_figures() -> None:
        with timing.work("figures"):
            raise ValueError("figures failed")

    with pytest.raises(ValueError, match="figures failed"):  # time up to a failure still counts
        failing_figures()
    rec = timing.record("pca")
    assert rec["stage"] == "pca" and set(rec["work"]) == {"fit", "figures"}
    assert 0 <= sum(rec["work"].values()) <= rec["seconds"]
    monkeypatch.delenv(timing.ENV, raising=False)
    timing.write_record("pca")  # not asked: nothing written anywhere
    out = tmp_path / "t.jsonl"
    monkeypatch.setenv(timing.ENV, str(out))
    timing.write_record("pca")
    timing.write_record("report")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["stage"] for r in lines] == ["pca", "report"]


def test_process_seconds_counts_from_the_interpreters_start():
    """A child that sleeps before importing the module still reports the sleep."""
    code = "import time; time.sleep(0.5)\nfrom mnist_codec import timing\nprint(timing.process_seconds())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**clean_env(), "PYTHONPATH": str(REPO / "src")},
    ).stdout
    assert 0.5 <= float(out) < 5.0


def test_a_stage_script_appends_its_timing_record(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", n_train=20, n_test=5)
    for d in ("data", ".dvc"):
        (tmp_path / d).mkdir(exist_ok=True)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    out = tmp_path / "timings.jsonl"
    env = {**clean_env(), "PYTHONPATH": str(REPO / "src"), timing.ENV: str(out)}
    subprocess.run(
        [sys.executable, str(REPO / "stages/preprocess.py"), "--raw", str(raw), "--out", "data/processed"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["stage"] == "preprocess" and list(rec["work"]) == ["preprocess"]
    assert 0 < rec["work"]["preprocess"] < rec["seconds"]
    assert np.load(tmp_path / "data/processed/train_x.npy").dtype == np.uint8
