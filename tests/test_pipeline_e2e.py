"""End to end: the real dvc.yaml on the real (bundled) MNIST, shrunk, in a throw-away git repo."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import project_copy, sh

pytestmark = pytest.mark.slow

CODECS = ["pca", "ae", "deep_relu", "deep_tanh", "deep_leaky_relu"]
SMALL = {"data": {"train_limit": 3000, "eval_limit": 500}, "train": {"epochs": 2},
         "evaluate": {"n_projection": 200}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git repo holding the project's files (what a clone has), with a small profile."""
    return project_copy(tmp_path_factory.mktemp("e2e") / "repo", SMALL)


@pytest.fixture(scope="module")
def first_repro(repo: Path) -> subprocess.CompletedProcess:
    return sh(repo, "dvc", "repro")


def test_every_stage_runs_and_writes_its_outputs(repo, first_repro):
    for stage in ("fetch", "preprocess", "pca", "train_ae", "train_deep", "evaluate", "report"):
        assert f"Running stage '{stage}'" in first_repro.stdout
    for rel in ("data/raw/train-images-idx3-ubyte.gz", "data/processed/train_x.npy", "models/pca.npz",
                "models/ae.pt", "models/deep/tanh.pt", "reports/metrics.json", "reports/comparison.md",
                "reports/comparison.csv", "reports/timings.json", "reports/report.html",
                "reports/curves/ae.csv", "reports/curves/deep/deep_leaky_relu.csv",
                "reports/figures/reconstructions.png", "reports/figures/pca_scatter.png",
                "reports/figures/codes_2d.png", "reports/figures/training_curves.png",
                "reports/figures/per_digit_mse.png"):
        assert (repo / rel).is_file(), rel
    assert "epoch 2/2 train_loss" in first_repro.stderr  # progress per epoch


def test_metrics_and_table(repo, first_repro):
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert list(metrics) == CODECS
    for m in metrics.values():
        assert set(m) == {"mse", "psnr", "code_size", "params", "mse_digit"}
        assert 0 < m["mse"] < 0.2 and m["code_size"] == 32 and len(m["mse_digit"]) == 10
    assert "seconds" not in json.dumps(metrics)  # timings live in their own file
    table = (repo / "reports/comparison.md").read_text()
    for name in ("PCA", "AE (1 layer)", "Deep AE (ReLU)", "Deep AE (Tanh)", "Deep AE (LeakyReLU)"):
        assert f"| {name} |" in table
    html = (repo / "reports/report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "<script" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing loaded from elsewhere: renders offline
    shown = sh(repo, "dvc", "metrics", "show", "--json").stdout
    assert "deep_tanh" in shown
    plots = json.loads(sh(repo, "dvc", "plots", "show", "--json").stdout)["data"]
    assert sorted(plots) == ["reports/curves/ae.csv", "reports/curves/deep/deep_leaky_relu.csv",
                             "reports/curves/deep/deep_relu.csv", "reports/curves/deep/deep_tanh.csv"]
    assert all('"eval_loss"' in json.dumps(p) and '"train_loss"' in json.dumps(p) for p in plots.values())


def test_mlflow_has_one_run_per_model_with_history_and_model(repo, first_repro):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mnist-codec")
    runs = client.search_runs([exp.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == sorted(CODECS + ["evaluate"]) and len(runs) == 6
    pipeline_ids = {r.data.tags["mnist_codec.pipeline"] for r in runs}
    assert len(pipeline_ids) == 1  # the runs of one execution are found together
    for name in CODECS:
        run = by_name[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mnist_codec.device"].startswith("cpu")
        assert run.data.tags["mnist_codec.dvc_exp"] == "workspace"
        assert len(run.data.tags["mnist_codec.data_sha256"]) == 64
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert len(history) == (1 if name == "pca" else 2)
        assert run.data.params["latent_dim"] == "32"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "reconstructions.png" in artifacts
        models = client.search_logged_models(experiment_ids=[exp.experiment_id],
                                             filter_string=f"source_run_id = '{run.info.run_id}'")
        assert len(models) == 1, name
    assert by_name["deep_tanh"].data.params["activation"] == "tanh"
    assert "comparison.md" in {a.path for a in client.list_artifacts(by_name["evaluate"].info.run_id)}
    record = json.loads((repo / "models/ae.json").read_text())
    assert record["mlflow_run_id"] == by_name["ae"].info.run_id
    assert (repo / "mlruns").is_dir()


def test_second_repro_runs_nothing(repo, first_repro):
    again = sh(repo, "dvc", "repro")
    assert "Running stage" not in again.stdout


@pytest.mark.parametrize("key, value, stale", [
    ("latent_dim", 16, ["pca", "train_ae", "train_deep"]),
    ("activation", "tanh", ["train_deep"]),
    ("seed", 7, ["train_ae", "train_deep"]),
    ("train.epochs", 3, ["train_ae", "train_deep"]),
    ("evaluate.n_examples", 4, ["evaluate"]),
    ("data.protocol", "notebook", ["preprocess"]),
])
def test_each_param_invalidates_only_the_stages_that_read_it(repo, first_repro, key, value, stale):
    path = repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    section, _, sub = key.rpartition(".")
    (params[section] if section else params)[sub] = value
    try:
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(sh(repo, "dvc", "status", "--json").stdout)
        assert sorted(status) == sorted(stale)
    finally:
        path.write_text(original)


def test_experiment_with_one_activation_reuses_pca_and_ae(repo, first_repro):
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    exp = sh(repo, "dvc", "exp", "run", "-S", "activation=tanh")
    out = exp.stdout
    for cached in ("fetch", "preprocess", "pca", "train_ae"):
        assert f"Running stage '{cached}'" not in out
    for ran in ("train_deep", "evaluate", "report"):
        assert f"Running stage '{ran}'" in out
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert list(metrics) == ["pca", "ae", "deep_tanh"]
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    assert shown  # the experiment is listed
