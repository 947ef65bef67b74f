"""The Model Registry and the champion rule on a real MLflow store: every trained model a version
tied back to its run, the champion's decision recorded, the fingerprint that keeps a re-run from
registering a duplicate. The pipeline's own stage functions run in-process on a few hundred
synthetic digits (the command: tests/test_cli.py; the scoring server: tests/test_scoring_server.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_codec.data import prepare, splits
from mnist_codec.pipeline import train_ae as train_ae_stage
from mnist_codec.tracking import fingerprint, registry
from mnist_codec.tracking import tags as ttags

from conftest import REPO, clean_env, full_params
from smoke import CODECS, env_for, make_project, params_for
from smoke import train_and_evaluate as run_pipeline


def versions(registry_client) -> list:
    return sorted(
        registry_client.search_model_versions(f"name = '{registry.REGISTERED_MODEL}'"), key=lambda v: int(v.version)
    )


def eval_split(root: Path) -> np.ndarray:
    return splits.load_split(root / "data/processed", "eval")[0]


# --- registration and lineage --------------------------------------------------------------


def test_every_trained_model_is_a_version_with_tags_that_tie_it_back(registered, registry_client):
    vs = versions(registry_client)
    assert len(vs) == 1 + 2 + 2  # PCA once, each autoencoder on both seeds
    meta = splits.read_meta(registered / "data/processed")
    commit = ttags.git_commit()
    by_codec = {}
    for v in vs:
        t = v.tags
        by_codec.setdefault(t["mnist_codec.codec"], []).append(v)
        assert t["mnist_codec.latent_dim"] == "32" and t["mnist_codec.protocol"] == "holdout"
        assert t["mnist_codec.data_sha256"] == meta["splits"]["train"]["sha256"]
        assert t["mnist_codec.eval_sha256"] == meta["splits"]["eval"]["sha256"]
        assert t["mnist_codec.git_commit"] == commit and t["mnist_codec.dvc_exp"] == "workspace"
        assert float(t["mnist_codec.eval_mse"]) > 0 and len(t["mnist_codec.fingerprint"]) == 64
        assert v.run_id == t["mnist_codec.run_id"]
    assert sorted(by_codec) == sorted(CODECS)
    assert sorted(v.tags["mnist_codec.seed"] for v in by_codec["ae"]) == sorted(
        str(json.loads((registered / f"models/ae/seed{r}.json").read_text())["seed"]) for r in range(2)
    )
    record = json.loads((registered / "models/ae/seed1.json").read_text())
    assert (
        registry_client.get_model_version(registry.REGISTERED_MODEL, record["model_version"]).run_id
        == record["mlflow_run_id"]
    )


def test_training_runs_show_their_datasets_and_source(registered, registry_client):
    record = json.loads((registered / "models/deep/deep_relu/seed0.json").read_text())
    run = registry_client.get_run(record["mlflow_run_id"])
    meta = splits.read_meta(registered / "data/processed")
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["mnist-holdout-eval", "mnist-holdout-train"]
    train = inputs["mnist-holdout-train"]
    assert train.dataset.digest == meta["splits"]["train"]["sha256"][:32]
    assert "train_x.npy" in train.dataset.source
    assert {t.key: t.value for t in train.tags}["mlflow.data.context"] == "training"
    assert run.data.tags["mlflow.source.git.commit"] == ttags.git_commit()
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.source.name"]


def test_the_best_codec_is_champion_and_the_decision_is_recorded(registered, registry_client):
    metrics = json.loads((registered / "reports/metrics_detail.json").read_text())
    best = min(metrics, key=lambda c: metrics[c]["mse"]["mean"])
    champion = registry_client.get_model_version_by_alias(registry.REGISTERED_MODEL, registry.CHAMPION)
    assert champion.tags["mnist_codec.codec"] == best
    assert champion.tags["mnist_codec.promotion"].startswith("promoted: no champion yet")
    assert float(champion.tags["mnist_codec.codec_mse_mean"]) == pytest.approx(metrics[best]["mse"]["mean"])
    runs = registry_client.search_runs(
        [registry_client.get_experiment_by_name("mnist-codec").experiment_id],
        filter_string="tags.`mnist_codec.stage` = 'evaluate'",
    )
    assert runs[0].data.tags["mnist_codec.champion.promoted"] == "true"
    assert runs[0].data.tags["mnist_codec.champion.candidate"] == f"mnist-codec/{champion.version}"


def test_a_fresh_process_loads_each_version_with_the_evaluations_numbers(registered, registry_client):
    metrics = json.loads((registered / "reports/metrics_detail.json").read_text())
    script = (
        "import json, sys, mlflow, numpy as np\n"
        "from mnist_codec.data import splits\n"
        "x = splits.load_split('data/processed', 'eval')[0].astype(np.float64)\n"
        "out = {}\n"
        "for v in sys.argv[1:]:\n"
        "    m = mlflow.pyfunc.load_model(f'models:/mnist-codec/{v}')\n"
        "    r = m.predict(x.astype(np.float32)).astype(np.float64)\n"
        "    out[v] = float(((r - x) ** 2).mean())\n"
        "print(json.dumps(out))\n"
    )
    vs = versions(registry_client)
    proc = subprocess.run(
        [sys.executable, "-c", script, *[str(v.version) for v in vs]],
        cwd=registered,
        env=env_for(registered),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    for v in vs:
        codec, replicate = v.tags["mnist_codec.codec"], int(v.tags.get("mnist_codec.replicate", 0))
        assert served[str(v.version)] == pytest.approx(metrics[codec]["mse"]["per_seed"][replicate], abs=1e-6)


def test_a_planted_pickle_is_never_executed_when_the_champion_loads(registered, registry_client, tmp_path):
    import mlflow

    champion = registry_client.get_model_version_by_alias(registry.REGISTERED_MODEL, registry.CHAMPION)
    model_dir = Path(mlflow.artifacts.download_artifacts(champion.source, dst_path=str(tmp_path / "copy")))
    marker = tmp_path / "pickle-ran"
    import pickle

    from conftest import Planted

    # where a cloudpickled PythonModel, a pickled flavour and a stray artifact would sit
    for rel in ("python_model.pkl", "model.pkl", "artifacts/weights.pkl", "data/model.pth"):
        (model_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / rel).write_bytes(pickle.dumps(Planted(str(marker))))
    script = (
        "import sys, mlflow, numpy as np\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "print(m.predict(np.full((1, 784), 0.5, np.float32)).shape)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(model_dir)],
        cwd=registered,
        env=env_for(registered),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(1, 784)" in proc.stdout
    assert not marker.exists()


def test_retraining_with_the_same_inputs_registers_no_duplicate(registered, registry_client):
    before = [v.version for v in versions(registry_client)]
    first = json.loads((registered / "models/ae/seed0.json").read_text())
    train_ae_stage.run(
        params_for(), registered / "data/processed", registered / "models/ae", registered / "reports/curves/ae"
    )
    again = json.loads((registered / "models/ae/seed0.json").read_text())
    assert [v.version for v in versions(registry_client)] == before
    assert again["model_version"] == first["model_version"] and again["mlflow_run_id"] != first["mlflow_run_id"]
    assert (
        registry_client.get_run(again["mlflow_run_id"]).data.tags["mnist_codec.model_version"]
        == f"mnist-codec/{first['model_version']}"
    )


def test_the_fingerprint_covers_the_code_that_makes_a_model_and_nothing_else(tmp_path):
    """Editing the tracking server, the command or a figure leaves every fingerprint as it was
    (a forced re-run registers no new version); editing the code that computes weights (the
    codecs, the trainings' pipeline modules) changes them."""
    import shutil

    shutil.copytree(
        REPO / "src" / "mnist_codec", tmp_path / "mnist_codec", ignore=shutil.ignore_patterns("__pycache__", "datasets")
    )

    def digest() -> str:
        out = subprocess.run(
            [sys.executable, "-c", "from mnist_codec.tracking.fingerprint import code_digest; print(code_digest())"],
            env={**clean_env(), "PYTHONPATH": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.strip()

    def touch(rel: str) -> None:
        with open(tmp_path / "mnist_codec" / rel, "a") as fh:
            fh.write("# edited\n")

    first = digest()
    for rel in (
        "tracking/server.py",
        "cli/results.py",
        "reporting/plots.py",
        "tracking/runs.py",
        "pipeline/evaluate.py",
    ):
        touch(rel)
        assert digest() == first, rel
    for rel in ("codecs/models.py", "codecs/trainer.py", "pipeline/training.py", "pipeline/pca.py", "machine.py"):
        touch(rel)
        assert digest() != first, rel
        first = digest()


def test_the_precision_is_part_of_both_fingerprints():
    """A bf16 model is another model: it resumes no fp32 checkpoint and is registered as its own version."""
    from types import SimpleNamespace

    from mnist_codec import params as P
    from mnist_codec.pipeline import training

    fp32 = P.validate(full_params())
    bf16 = P.validate(full_params({"train": {"precision": "bf16"}}))
    target = training.CodecTarget("ae", {"kind": "ae", "latent_dim": 32}, {}, Path("m"), Path("c"))
    assert training.fingerprint(fp32, target, 1, "d") != training.fingerprint(bf16, target, 1, "d")
    assert training.fingerprint(fp32, target, 1, "d") == training.fingerprint(P.validate(full_params()), target, 1, "d")
    run = SimpleNamespace(tags={}, run_id="r")

    def tag(p) -> str:
        return fingerprint.version_tags(run, target.spec, 0.01, "e", training.made_of(p, 1, "d"))[
            fingerprint.FINGERPRINT_TAG
        ]

    assert tag(fp32) != tag(bf16)


# --- the promotion rule over three runs ----------------------------------------------------


@pytest.mark.full
def test_a_better_run_takes_the_alias_and_a_worse_one_does_not(tmp_path, monkeypatch):
    import mlflow

    root = make_project(tmp_path / "p")
    for key, value in env_for(root).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)
    registry_client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    few, full = tmp_path / "few", root / "data/processed"  # the same evaluation images, fewer training ones
    prepare.preprocess(root / "data/raw", few, "holdout", train_limit=40)

    def champion():
        return registry_client.get_model_version_by_alias(registry.REGISTERED_MODEL, registry.CHAMPION)

    run_pipeline(root, params_for(train={"epochs": 1}), few)  # weak: 40 images, one epoch
    weak = champion()
    n_weak = len(versions(registry_client))
    run_pipeline(root, params_for(train={"epochs": 3}), full)  # strong: all 300 images
    strong = champion()
    assert strong.version != weak.version
    assert (
        strong.tags["mnist_codec.promotion"].startswith("promoted:")
        and "wholly below" in strong.tags["mnist_codec.promotion"]
    )
    n_strong = len(versions(registry_client))
    assert n_strong > n_weak
    run_pipeline(root, params_for(train={"epochs": 1}), few)  # the weak run again: same inputs, same versions
    assert len(versions(registry_client)) == n_strong
    assert champion().version == strong.version
    weak_again = registry_client.get_model_version(registry.REGISTERED_MODEL, weak.version)
    assert weak_again.tags["mnist_codec.promotion"].startswith("not promoted:")
    # a variant with another code size registers but never competes
    run_pipeline(root, params_for(latent_dim=16, train={"epochs": 1}), full)
    assert len(versions(registry_client)) > n_strong and champion().version == strong.version
    evaluate = registry_client.search_runs(
        [registry_client.get_experiment_by_name("mnist-codec").experiment_id],
        filter_string="tags.`mnist_codec.stage` = 'evaluate'",
        order_by=["attributes.start_time DESC"],
    )[0]
    assert evaluate.data.tags["mnist_codec.champion.promoted"] == "false"
    assert "latent_dim 16 is not the champion's 32" in evaluate.data.tags["mnist_codec.champion.reason"]
