"""The in-process smoke run: every stage of dvc.yaml, called as its stage script calls it, on
the real bundled MNIST cut to a few hundred digits, against a private MLflow store.

`make test` runs it once (the session fixture ``smoke`` in conftest.py) and every test that
needs a trained, evaluated and registered project reads it; `make test-full` adds the DVC
runs of the same stages in tests/test_pipeline_e2e.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mnist_codec.data import prepare
from mnist_codec.params import validate
from mnist_codec.pipeline import evaluate as evaluate_stage
from mnist_codec.pipeline import fetch as fetch_stage
from mnist_codec.pipeline import pca as pca_stage
from mnist_codec.pipeline import preprocess as preprocess_stage
from mnist_codec.pipeline import report as report_stage
from mnist_codec.pipeline import train_ae as train_ae_stage
from mnist_codec.pipeline import train_deep as train_deep_stage

from conftest import clean_env, write_raw_dir

CODECS = ["pca", "ae", "deep_relu"]
SMOKE = {
    "n_seeds": 2,
    "activation": ["relu"],
    "deep": {"hidden": [64]},
    "train": {"epochs": 2},
    "data": {"train_limit": 300, "eval_limit": 100},
    "evaluate": {"n_projection": 50},
}


def params_for(**overrides):
    return validate({**SMOKE, **overrides})


def train_and_evaluate(root: Path, params, data_dir: Path) -> None:
    """pca -> train_ae -> train_deep -> evaluate, as the DVC stages call them."""
    pca_stage.run(params, data_dir, root / "models/pca.npz", root / "models/pca.json")
    train_ae_stage.run(params, data_dir, root / "models/ae", root / "reports/curves/ae")
    train_deep_stage.run(params, data_dir, root / "models/deep", root / "reports/curves/deep")
    evaluate_stage.run(
        params,
        data_dir,
        root / "models/pca.npz",
        root / "models/ae",
        root / "models/deep",
        root / "reports/metrics.json",
        root / "reports/metrics_detail.json",
        root / "reports/comparison.md",
        root / "reports/comparison.csv",
        root / "reports/timings.json",
        root / "data/evaluation/samples.npz",
    )


def run_all(root: Path, params) -> None:
    """The whole pipeline, fetch to report, with the paths dvc.yaml gives each stage."""
    (root / ".dvc").mkdir(parents=True, exist_ok=True)
    fetch_stage.run(params, root / "data/raw")
    preprocess_stage.run(params, root / "data/raw", root / "data/processed")
    train_and_evaluate(root, params, root / "data/processed")
    report_stage.run(
        root / "reports/metrics_detail.json",
        root / "reports/comparison.csv",
        root / "reports/curves",
        root / "data/evaluation/samples.npz",
        root / "reports/figures",
        root / "reports/report.html",
    )


def make_project(root: Path, n_train: int = 300) -> Path:
    """A project folder with preprocessed synthetic digits, for tests that train their own."""
    (root / ".dvc").mkdir(parents=True)
    raw = write_raw_dir(root / "data/raw", n_train=n_train, n_test=100)
    prepare.preprocess(raw, root / "data/processed", "holdout")
    return root


def env_for(root: Path) -> dict[str, str]:
    env = clean_env()
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        DVC_ROOT=str(root),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    )
    return env
