"""The gate on real runs of the small profile: it tells a regression from noise.

A baseline is made once; then the same code is run again in other conditions and
`mnist-codec gate` is asked about it, as CI asks:

* another thread plan (the stages pinned to one core with ``taskset``) must pass;
* another base seed, which redraws every model's initial weights and data order (what a
  CPU with other float paths does to a training, at its worst) must pass;
* an injected regression (one epoch fewer: the deep autoencoders a few percent worse)
  must fail.

The profile is small (3,000 images, batch 64, 4 epochs) but past the plateau where every
autoencoder still outputs the mean digit, so seeds matter as in a full run: each model's
MSE varies by about 3-4% from seed to seed. Telling a regression of a few percent from that
needs more than 3 seeds: this profile uses 10 (the models are small; it takes about a
minute a run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import project_copy, sh

pytestmark = pytest.mark.full

SMALL = {
    "data": {"train_limit": 3000, "eval_limit": 500},
    "train": {"epochs": 4, "batch_size": 64},
    "n_seeds": 10,
    "activation": ["relu", "leaky_relu"],  # the two whose regression below is asserted
    "evaluate": {"n_projection": 200},
}
DEEP = ["deep_relu", "deep_leaky_relu"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = project_copy(tmp_path_factory.mktemp("gate") / "repo", SMALL)
    sh(root, "dvc", "repro")
    shutil.copy(root / "reports/metrics.json", root.parent / "baseline.json")
    return root


def _gate(repo: Path) -> subprocess.CompletedProcess:
    gate = Path(sys.executable).parent / "mnist-codec"
    return sh(
        repo,
        str(gate),
        "gate",
        "--baseline",
        str(repo.parent / "baseline.json"),
        "--current",
        "reports/metrics.json",
        "--rules",
        "metrics_gate.yaml",
        check=False,
    )


def _run(repo: Path, changes: dict, *prefix: str) -> tuple[dict, subprocess.CompletedProcess]:
    """Run the pipeline with ``changes`` to params.yaml (then put it back); the fresh metrics and the gate's verdict."""
    path = repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    for key, value in changes.items():
        section, _, sub = key.rpartition(".")
        (params[section] if section else params)[sub] = value
    try:
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        # the stages whose numbers the gate reads, each forced on its own (-s): the data, PCA's
        # fit and the report's figures are the baseline's, and cost nothing here
        for stage in ("train_ae", "train_deep", "evaluate"):
            sh(repo, *prefix, "dvc", "repro", "--force", "--single-item", stage)
        return json.loads((repo / "reports/metrics.json").read_text()), _gate(repo)
    finally:
        path.write_text(original)


def _baseline(repo: Path) -> dict:
    return json.loads((repo.parent / "baseline.json").read_text())


def _change(base: dict, current: dict, codec: str) -> float:
    return current[codec]["mse"]["mean"] / base[codec]["mse"]["mean"] - 1


def test_the_baseline_passes_against_itself(repo):
    proc = _gate(repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_another_thread_plan_passes(repo):
    _current, proc = _run(repo, {}, "taskset", "-c", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    timings = json.loads((repo / "reports/timings.json").read_text())
    assert timings["train_device"]["deep_relu"].startswith("cpu:1 cores")  # it did run on one core


def test_another_base_seed_passes(repo):
    base = _baseline(repo)
    current, proc = _run(repo, {"seed": 7})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for codec in ["ae", *DEEP]:  # every model was retrained from other weights: every seed's number moved
        assert all(
            a != b for a, b in zip(current[codec]["mse"]["per_seed"], base[codec]["mse"]["per_seed"], strict=True)
        )


def test_a_regression_of_a_few_percent_fails(repo):
    base = _baseline(repo)
    current, proc = _run(repo, {"train.epochs": 3})
    changes = {codec: _change(base, current, codec) for codec in DEEP}
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = {line.split()[0] for line in proc.stdout.splitlines() if "regressed" in line}
    # ReLU and LeakyReLU lose a few percent (measured: +6% and +8%) and are caught (Tanh, nearly
    # flat between epochs 3 and 4 here, is left out of this profile: it would not be a regression)
    for codec in DEEP:
        assert 0.02 < changes[codec] < 0.15, changes
        assert f"{codec}.mse" in failed, proc.stdout
    assert not any(m.startswith("pca.") for m in failed)  # PCA did not change
