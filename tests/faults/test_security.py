"""Security: no pickled code runs, the UI listens on 127.0.0.1 only, the pinned MLflow
and torch are past their known advisories, and nothing is written outside the repo."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from mnist_codec.codecs import models
from mnist_codec.errors import DataError, ParamsError
from mnist_codec.runner import check_outputs

from conftest import REPO, Planted, params_text, write_raw_dir

Payload = Planted  # the planted pickle, shared with the registry test


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({"spec": {"kind": "ae", "latent_dim": 4}, "state_dict": Payload(marker)}, fh)


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """The control for the tests below: unpickling the payload does create its marker."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()


def _planted_npz(path: Path, marker: Path, key: str) -> None:
    """An .npz whose array is an object array: numpy stores it as a pickle of the payload."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{key: np.array([Payload(marker)], dtype=object)})


def _load_model(tmp_path: Path, marker: Path) -> None:
    plant(tmp_path / "evil.pt", marker)
    models.load(tmp_path / "evil.pt")


def _load_served_weights(tmp_path: Path, marker: Path) -> None:
    from mnist_codec.serving import model as serving

    spec = {"kind": "deep", "latent_dim": 8, "hidden": [32], "activation": "relu"}
    paths = serving.write_artifacts(models.build(spec), spec, tmp_path)
    _planted_npz(Path(paths["weights"]), marker, "encoder.0.weight")
    serving.load_codec(paths["spec"], paths["weights"])


def _load_pca(tmp_path: Path, marker: Path) -> None:
    from mnist_codec.codecs import pca

    _planted_npz(tmp_path / "pca.npz", marker, "mean")  # the first array PCA reads
    pca.load(tmp_path / "pca.npz")


# Every loader of a stored model, one place: a training checkpoint or model file (torch.load with
# weights_only=True), the served codec's weights (np.load, allow_pickle=False), PCA's arrays.
# The evaluate stage below and the registry's champion (tests/test_registry.py) go through them.
@pytest.mark.parametrize(
    ("load", "says"),
    [
        (_load_model, "evil.pt: not a valid mnist-codec model file"),
        (_load_served_weights, "not a valid codec artifact"),
        (_load_pca, "not a valid PCA file"),
    ],
    ids=["model-file", "served-weights", "pca"],
)
def test_a_planted_pickle_is_refused_by_every_loader_and_never_runs(tmp_path, load, says):
    marker = tmp_path / "executed"
    with pytest.raises(DataError, match=says):
        load(tmp_path, marker)
    assert not marker.exists()


def test_the_evaluate_stage_refuses_a_planted_model_file(tmp_path):
    from mnist_codec.codecs import models
    from mnist_codec.data import prepare

    root = tmp_path / "p"
    (root / ".dvc").mkdir(parents=True)
    prepare.preprocess(write_raw_dir(root / "data" / "raw"), root / "data" / "processed", "holdout")
    (root / "params.yaml").write_text(params_text({"latent_dim": 4}))
    plant(root / "models" / "pca.npz", root / "executed-pca")  # .npz is read with allow_pickle=False
    plant(root / "models" / "ae" / "seed0.pt", root / "executed-ae")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "evaluate.py"),
            "--data",
            "data/processed",
            "--pca",
            "models/pca.npz",
            "--ae",
            "models/ae",
            "--deep",
            "models/deep",
            "--metrics",
            "reports/metrics.json",
            "--detail",
            "reports/metrics_detail.json",
            "--table-md",
            "reports/comparison.md",
            "--table-csv",
            "reports/comparison.csv",
            "--timings",
            "reports/timings.json",
            "--samples",
            "data/evaluation/samples.npz",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "evaluate: error: models/pca.npz: not a valid PCA file" in proc.stderr
    assert not (root / "executed-pca").exists() and not (root / "executed-ae").exists()
    assert not (root / "reports").exists()
    with pytest.raises(DataError, match="not a valid mnist-codec model file"):
        models.load(root / "models" / "ae" / "seed0.pt")
    assert not (root / "executed-ae").exists()


def test_the_mlflow_ui_and_the_scoring_server_listen_on_127_0_0_1_only(tmp_path):
    from mnist_codec.serving import http
    from mnist_codec.tracking import ui

    (tmp_path / ".dvc").mkdir()
    ui_cmd = ui.command(tmp_path, 5000)[0]
    serve_cmd = http.command("champion", 5001)[0]
    for cmd in (ui_cmd, serve_cmd):
        assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "0.0.0.0" not in cmd
    recipes = re.findall(
        r"^(?:ui|tracking-server|serve-model):.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M
    )
    assert len(recipes) == 3 and not any("--host" in r or "0.0.0.0" in r for r in recipes)
    blocks = [b for page in sorted((REPO / "docs").glob("*.md")) for b in page.read_text().split("```")[1::2]]
    ui_blocks = [b for b in blocks if re.search(r"mlflow (ui|server|models serve)", b)]
    assert ui_blocks
    for block in ui_blocks:
        assert "--host 127.0.0.1" in block and "0.0.0.0" not in block, block


def _locked() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = Version(version.split(";")[0].strip())
    return pins


def test_locked_versions_are_past_every_listed_advisory():
    pins = _locked()
    advisories = yaml.safe_load((REPO / "security" / "advisories.yaml").read_text())
    assert {a["package"] for a in advisories} >= {"mlflow", "torch"}
    for adv in advisories:
        assert pins[adv["package"]] >= Version(str(adv["fixed"])), f"{adv['id']}: {adv['what']}"
    # MLflow is pinned exactly, in the package metadata as in the lock
    assert f'"mlflow=={pins["mlflow"]}"' in (REPO / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    "path",
    [
        "../outside/raw",
        "/tmp/mnist-codec-elsewhere/raw",
        "data/../../raw",
        "data",
        "src/mnist_codec/datasets",
        "mlruns/x",
    ],
)
def test_outputs_outside_the_repos_own_folders_are_refused(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match="refusing to write there"):
        check_outputs([path], tmp_path)
    check_outputs(["data/raw", "models/deep", "reports/figures", "data/../models/ae.pt"], tmp_path)


def test_a_symlink_out_of_the_repo_is_refused(tmp_path, monkeypatch):
    (tmp_path / "repo" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "repo" / "data" / "raw").symlink_to(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path / "repo")
    with pytest.raises(ParamsError, match="refusing to write there"):
        check_outputs(["data/raw/x.gz"], tmp_path / "repo")


def test_a_stage_asked_to_write_outside_refuses_and_writes_nothing(tmp_path):
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    (root / "params.yaml").write_text(params_text({"seed": 1}))
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "fetch.py"), "--out", "../stolen"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fetch: error: output path '../stolen'" in proc.stderr
    assert not (tmp_path / "stolen").exists()
