"""Training faults: a diverging loss, a kill mid-training, a kill mid-write, a resume.

Stages run as DVC runs them: ``python stages/<stage>.py`` in a project folder, logging to
that folder's own MLflow store.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mnist_codec.codecs import models, train
from mnist_codec.codecs.checkpoints import Checkpoint
from mnist_codec.codecs.seeding import derive_seed, seed_everything
from mnist_codec.data import prepare
from mnist_codec.params import validate
from mnist_codec.pipeline import evaluate as evaluate_stage
from mnist_codec.pipeline import pca as pca_stage
from mnist_codec.pipeline import preprocess as preprocess_stage
from mnist_codec.pipeline import report as report_stage
from mnist_codec.pipeline import train_ae as train_ae_stage
from mnist_codec.pipeline import train_deep as train_deep_stage

from conftest import REPO, clean_env, params_text, store_runs, write_raw_dir

DEEP_ARGS = ["--data", "data/processed", "--out", "models/deep", "--curves", "reports/curves/deep"]


def mini_project(root: Path, n_train: int = 3000, **params) -> Path:
    """A project folder (found as the repo by its .dvc) with synthetic processed data."""
    (root / ".dvc").mkdir(parents=True)
    raw = write_raw_dir(root / "data" / "raw", n_train=n_train, n_test=200)
    prepare.preprocess(raw, root / "data" / "processed", "holdout")
    (root / "params.yaml").write_text(params_text(params))
    return root


def run_stage(root: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py"), *args],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def leftovers(root: Path) -> list[str]:
    """Temporary files or folders anywhere under the project's output folders."""
    return [
        str(p)
        for folder in ("data", "models", "reports")
        if (root / folder).exists()
        for p in (root / folder).rglob(".*")
        if p.name != ".checkpoints"
    ]


# --- a loss that stops being finite --------------------------------------------------------


def test_a_diverging_loss_stops_the_stage_naming_model_and_epoch(tmp_path):
    # Adam at lr=1e12 blows the weights up past float32's range in the first steps
    root = mini_project(
        tmp_path / "p",
        n_train=600,
        latent_dim=8,
        activation=["relu"],
        deep={"hidden": [64, 16]},
        train={"epochs": 3, "lr": 1.0e12},
    )
    proc = run_stage(root, "train_deep", *DEEP_ARGS)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # the seeds train side by side: whichever diverges first is named
    assert re.search(
        r"train_deep: error: deep_relu/seed[012]: training loss became nan in epoch 1; lower train.lr", proc.stderr
    )
    assert not (root / "models" / "deep").exists()
    assert [p for p in (root / "reports").rglob("*") if p.is_file()] == []
    runs = store_runs(root, "train_deep")[0]
    assert [r.info.status for r in runs] == ["FAILED"] * 4  # the codec's run and its three seeds' runs
    assert leftovers(root) == []


# --- SIGTERM mid-training, then the next run resumes -----------------------------------------

RESUMABLE = {"seed": 5, "n_seeds": 2, "latent_dim": 32, "activation": ["relu", "tanh"], "train": {"epochs": 6}}
SEED_RUNS = ["deep_relu", "deep_relu seed0", "deep_relu seed1", "deep_tanh", "deep_tanh seed0", "deep_tanh seed1"]


def test_sigterm_mid_training_kills_the_runs_and_the_next_run_resumes(tmp_path):
    """The stage process's side: exit 130, runs KILLED, nothing written but checkpoints, and the
    next run resumes from them. That a resumed run ends with the uninterrupted run's losses is
    held exactly in the library below; Ctrl-C under `dvc repro` in test_dvc_faults.py."""
    root = mini_project(tmp_path / "killed", n_train=1000, **RESUMABLE)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "train_deep.py"), *DEEP_ARGS],
        cwd=root,
        env=clean_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "epoch 2/6" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, "".join(seen) + rest
    assert "train_deep: interrupted" in rest
    # no model, no partial output; both MLflow runs KILLED; checkpoints kept for the next run
    assert not (root / "models" / "deep").exists() and not (root / "reports" / "curves" / "deep").exists()
    assert leftovers(root) == []
    killed = store_runs(root, "train_deep")[0]
    assert sorted(r.info.run_name for r in killed) == SEED_RUNS
    assert {r.info.status for r in killed} == {"KILLED"}
    checkpoints = sorted(p.name for p in (root / "models" / ".checkpoints").iterdir())
    assert checkpoints == [
        "deep_relu.seed0.ckpt",
        "deep_relu.seed1.ckpt",
        "deep_tanh.seed0.ckpt",
        "deep_tanh.seed1.ckpt",
    ]

    again = run_stage(root, "train_deep", *DEEP_ARGS)
    assert again.returncode == 0, again.stderr
    assert "deep_relu/seed1: resuming after epoch" in again.stderr
    for name in ("deep_relu", "deep_tanh"):
        assert all((root / "models" / "deep" / name / f"seed{r}.pt").is_file() for r in range(2))
    assert not (root / "models" / ".checkpoints").exists()  # spent once the outputs are in place
    for name in ("deep_relu/seed0", "deep_relu/seed1", "deep_tanh/seed0", "deep_tanh/seed1"):
        got = np.loadtxt(root / "reports/curves/deep" / f"{name}.csv", delimiter=",", skiprows=1)
        assert got.shape == (6, 3)  # every epoch's losses, the ones before the signal included
    finished = [r for r in store_runs(root, "train_deep")[0] if r.info.status == "FINISHED"]
    assert sorted(r.info.run_name for r in finished) == SEED_RUNS


# --- resume, in the library: exact -----------------------------------------------------------


def _job(name: str, ckpt: Path | None, fingerprint: str = "f1") -> train.Job:
    generator = seed_everything(derive_seed(9, name))
    spec = {"kind": "deep", "latent_dim": 8, "hidden": [32, 16], "activation": name.removeprefix("deep_")}
    checkpoint = Checkpoint(ckpt, fingerprint) if ckpt else None
    return train.Job(name, models.build(spec), generator, checkpoint=checkpoint)


@pytest.mark.parametrize(("cores", "optim"), [(1, {}), (2, {}), (2, {"schedule": "onecycle", "weight_decay": 1e-3})])
def test_an_interrupted_training_resumes_from_its_checkpoint_to_the_same_losses(digits, tmp_path, cores, optim):
    x = torch.from_numpy(digits[0])
    names = ["deep_relu", "deep_tanh", "deep_leaky_relu"]
    kw = dict(epochs=5, batch_size=64, lr=1e-3, cores=cores, **optim)  # a schedule resumes at its epoch
    reference = train.fit_many([_job(n, None) for n in names], x, x[:50], **kw)

    class Stop(KeyboardInterrupt):
        pass

    def stop_at_3(r):
        if r.epoch == 3:
            raise Stop

    jobs = [_job(n, tmp_path / f"{n}.ckpt") for n in names]
    jobs[1].on_epoch = stop_at_3
    with pytest.raises(Stop):
        train.fit_many(jobs, x, x[:50], **kw)
    state = torch.load(tmp_path / "deep_tanh.ckpt", weights_only=True)
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3]
    assert {"model", "adam", "generator", "fingerprint"} <= set(state)

    reported = []
    resumed_jobs = [_job(n, tmp_path / f"{n}.ckpt") for n in names]  # fresh weights, fresh generators
    resumed_jobs[0].on_epoch = lambda r: reported.append(r.epoch)
    resumed = train.fit_many(resumed_jobs, x, x[:50], **kw)
    for got, want in zip(resumed, reference, strict=True):
        assert [(r.epoch, r.train_loss, r.eval_loss) for r in got] == [
            (r.epoch, r.train_loss, r.eval_loss) for r in want
        ]
    assert reported == [1, 2, 3, 4, 5]  # restored epochs are reported again, each once


def test_a_checkpoint_for_other_params_or_cut_short_is_not_resumed(digits, tmp_path):
    x = torch.from_numpy(digits[0])
    kw = {"epochs": 2, "batch_size": 64, "lr": 1e-3, "cores": 1}
    reference = train.fit_many([_job("deep_relu", None)], x, x[:50], **kw)[0]
    ckpt = tmp_path / "deep_relu.ckpt"
    train.fit_many(
        [_job("deep_relu", ckpt, fingerprint="other params")], x, x[:50], epochs=1, batch_size=64, lr=1e-3, cores=1
    )
    assert ckpt.exists()
    fresh = train.fit_many([_job("deep_relu", ckpt, fingerprint="these params")], x, x[:50], **kw)[0]
    assert [r.train_loss for r in fresh] == [r.train_loss for r in reference]  # trained from the start
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # cut short
    fresh = train.fit_many([_job("deep_relu", ckpt, fingerprint="these params")], x, x[:50], **kw)[0]
    assert [r.train_loss for r in fresh] == [r.train_loss for r in reference]


# --- killed at any write: old outputs or none ------------------------------------------------


def _outputs(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for folder in ("models", "reports", "data/processed", "data/evaluation")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file() and ".checkpoints" not in p.parts
    }


def _stages(root: Path, params) -> list[tuple[str, Callable[[], None]]]:
    """Every stage after fetch, in the pipeline's order, each as (name, a call that runs it as
    the pipeline does), on the mini project."""
    data, models_dir, reports = root / "data/processed", root / "models", root / "reports"
    return [
        ("preprocess", lambda: preprocess_stage.run(params, root / "data/raw", data)),
        ("pca", lambda: pca_stage.run(params, data, models_dir / "pca.npz", models_dir / "pca.json")),
        ("train_ae", lambda: train_ae_stage.run(params, data, models_dir / "ae", reports / "curves/ae")),
        (
            "evaluate",
            lambda: evaluate_stage.run(
                params,
                data,
                models_dir / "pca.npz",
                models_dir / "ae",
                models_dir / "deep",
                reports / "metrics.json",
                reports / "metrics_detail.json",
                reports / "comparison.md",
                reports / "comparison.csv",
                reports / "timings.json",
                root / "data/evaluation/samples.npz",
            ),
        ),
        ("train_deep", lambda: train_deep_stage.run(params, data, models_dir / "deep", reports / "curves/deep")),
        (
            "report",
            lambda: report_stage.run(
                reports / "metrics_detail.json",
                reports / "comparison.csv",
                reports / "curves",
                root / "data/evaluation/samples.npz",
                reports / "figures",
                reports / "report.html",
            ),
        ),
    ]


@pytest.mark.full
def test_a_stage_killed_at_any_rename_leaves_each_output_old_or_complete(tmp_path, monkeypatch, mlflow_store):
    # one seed: every kind of output and rename is there (per-model files, folders swapped
    # whole, the tables, the report) at about half the renames of two; each rename is killed once
    root = mini_project(
        tmp_path / "p",
        n_train=300,
        latent_dim=4,
        activation=["tanh"],
        deep={"hidden": [16, 8]},
        n_seeds=1,
        train={"epochs": 1},
        evaluate={"n_projection": 50},
    )
    params = validate(yaml.safe_load((root / "params.yaml").read_text()))
    pca_stage.run(params, root / "data/processed", root / "models/pca.npz", root / "models/pca.json")
    train_deep_stage.run(params, root / "data/processed", root / "models/deep", root / "reports/curves/deep")
    stages = _stages(root, params)
    for _, run in stages:
        run()
    old = _outputs(root)

    real_replace = os.replace
    # each rename killed once, in a run of its own stage (the others' outputs stay as they are,
    # old and complete, as after any earlier run), until a run of the stage gets through
    killed = {}
    for name, run in stages:
        k = 0
        while True:
            seen = []

            def kill_at_k(src, dst, k=k, seen=seen, name=name):
                seen.append(dst)
                if len(seen) == k + 1:
                    raise KeyboardInterrupt(f"{name} killed at its rename {k + 1} ({dst})")
                return real_replace(src, dst)

            monkeypatch.setattr(os, "replace", kill_at_k)
            try:
                run()
                done = True
            except KeyboardInterrupt:
                done = False
            finally:
                monkeypatch.setattr(os, "replace", real_replace)
            now = _outputs(root)
            assert leftovers(root) == [], f"{name}, rename {k + 1}"
            assert set(now) == set(old), f"{name}, rename {k + 1}"  # nothing removed
            for rel in now:  # each file the old one or a complete new one, never torn
                _check_complete(root / rel)
            if done:
                break
            k += 1
            assert k < 100, f"{name}: a run killed at each of 100 renames never got through"
        killed[name] = k
    assert sum(killed.values()) >= 20 and all(killed.values()), killed


def _check_complete(path: Path) -> None:
    import json

    if path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".pt":
        models.load(path)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            [npz[k] for k in npz.files]
    elif path.suffix == ".npy":
        np.load(path, allow_pickle=False)
    elif path.suffix == ".png":
        assert path.read_bytes().startswith(b"\x89PNG") and path.read_bytes().endswith(b"IEND\xaeB`\x82")
    elif path.suffix == ".html":
        assert path.read_text().rstrip().endswith("</html>")
    elif path.suffix == ".csv":
        lines = path.read_text().splitlines()
        assert len(lines) >= 2 and all(line.count(",") == lines[0].count(",") for line in lines)
    else:
        assert path.read_text().endswith("\n")
