"""The stronger codecs beyond the notebook's, through the pipeline's own stage functions:
the convolutional AE and a wider MLP, each selected by params, each its own MLflow runs and
registered versions, in the comparison table with its stored-numbers count, and loaded back
from MLflow in a fresh process with the evaluation's numbers. Tiny synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mnist_codec.codecs import models
from mnist_codec.params import validate
from mnist_codec.pipeline import evaluate as evaluate_stage
from mnist_codec.pipeline import train_deep as train_deep_stage
from mnist_codec.tracking import registry

from smoke import env_for, make_project
from smoke import train_and_evaluate as run_pipeline


@pytest.fixture(scope="module")
def conv_project(tmp_path_factory):
    """pca -> train_ae -> train_deep (deep.arch conv, 2 activations, 2 seeds) -> evaluate."""
    root = make_project(tmp_path_factory.mktemp("codecs") / "p")
    params = validate(
        {
            "n_seeds": 2,
            "activation": ["relu", "elu"],
            "train": {"epochs": 2, "schedule": "onecycle"},
            "deep": {"arch": "conv", "channels": [4, 8]},
            "evaluate": {"n_projection": 50},
        }
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env_for(root).items():
            mp.setenv(key, value)
        mp.chdir(root)
        run_pipeline(root, params, root / "data/processed")
    return root


@pytest.mark.full  # trains conv codecs of their own: make test-full
def test_conv_codecs_are_trained_logged_and_registered_per_seed(conv_project):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{conv_project / 'mlflow.db'}")
    index = json.loads((conv_project / "models/deep/index.json").read_text())
    assert index["codecs"] == ["conv_relu", "conv_elu"]
    for codec in index["codecs"]:
        parent = json.loads((conv_project / f"models/deep/{codec}/index.json").read_text())
        assert client.get_run(parent["mlflow_run_id"]).data.params["deep.arch"] == "conv"
        for r in range(2):
            record = json.loads((conv_project / f"models/deep/{codec}/seed{r}.json").read_text())
            assert record["spec"] == {
                "kind": "conv",
                "latent_dim": 32,
                "channels": [4, 8],
                "activation": codec.removeprefix("conv_"),
            }
            run = client.get_run(record["mlflow_run_id"])
            assert run.info.status == "FINISHED" and run.data.tags["mnist_codec.codec"] == codec
            assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
            version = client.get_model_version(registry.REGISTERED_MODEL, record["model_version"])
            assert version.tags["mnist_codec.codec"] == codec and version.run_id == run.info.run_id
            model, spec = models.load(conv_project / f"models/deep/{codec}/seed{r}.pt")
            assert spec == record["spec"] and isinstance(model.encoder[1], torch.nn.Conv2d)


@pytest.mark.full  # trains conv codecs of their own: make test-full
def test_the_comparison_table_names_the_conv_codecs_with_their_stored_numbers(conv_project):
    table = (conv_project / "reports/comparison.md").read_text()
    metrics = json.loads((conv_project / "reports/metrics_detail.json").read_text())
    stored = models.count_parameters(models.conv_autoencoder(32, (4, 8), "relu"))
    assert metrics["conv_relu"]["stored_numbers"] == stored
    for name in ("Conv AE (ReLU)", "Conv AE (ELU)"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} "))
        assert f"{stored:,}" in row


@pytest.mark.full  # trains conv codecs of their own: make test-full
def test_a_fresh_process_loads_a_conv_version_from_mlflow_with_its_number(conv_project):
    metrics = json.loads((conv_project / "reports/metrics_detail.json").read_text())
    record = json.loads((conv_project / "models/deep/conv_elu/seed1.json").read_text())
    script = (
        "import sys, mlflow, numpy as np\n"
        "from mnist_codec.data import splits\n"
        "x = splits.load_split('data/processed', 'eval')[0]\n"
        "m = mlflow.pyfunc.load_model(f'models:/mnist-codec/{sys.argv[1]}')\n"
        "print(float(((m.predict(x).astype(np.float64) - x) ** 2).mean()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(record["model_version"])],
        cwd=conv_project,
        env=env_for(conv_project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    served = float(proc.stdout.strip().splitlines()[-1])
    assert served == pytest.approx(metrics["conv_elu"]["mse"]["per_seed"][1], abs=1e-6)


def test_a_wider_mlp_is_a_params_change_away(tmp_path, monkeypatch):
    root = make_project(tmp_path / "p", n_train=200)
    for key, value in env_for(root).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)
    params = validate(
        {"n_seeds": 1, "activation": "leaky_relu", "deep": {"hidden": [100, 50, 25]}, "train": {"epochs": 1}}
    )
    train_deep_stage.run(params, root / "data/processed", root / "models/deep", root / "reports/curves/deep")
    model, _spec = models.load(root / "models/deep/deep_leaky_relu/seed0.pt")
    widths = [(m.in_features, m.out_features) for m in model.modules() if hasattr(m, "in_features")]
    assert widths == [(784, 100), (100, 50), (50, 25), (25, 32), (32, 25), (25, 50), (50, 100), (100, 784)]


@pytest.mark.full  # trains conv codecs of their own: make test-full
def test_a_deep_index_without_its_codec_list_is_refused_by_name(conv_project, tmp_path):
    from mnist_codec.errors import DataError

    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "index.json").write_text(json.dumps({"activations": ["relu"]}))
    with pytest.raises(DataError, match=r"deep/index.json: lists no codecs; re-run the train_deep stage"):
        evaluate_stage.load_codecs(conv_project / "models/pca.npz", conv_project / "models/ae", deep)
