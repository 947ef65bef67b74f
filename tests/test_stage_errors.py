"""Stage scripts: bad input is one clear line on stderr and exit code 2, no traceback."""

import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, full_params, params_text


def _run(script, *args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / script), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


# Every key's wording is held once, in tests/faults/test_params_faults.py; here a stage process
# turns a bad value and an unknown key into that one line, before any work.
@pytest.mark.parametrize(
    ("params_text", "expected"),
    [
        ("train:\n  lr: 1e-3\n", "params.yaml:2: 'train.lr' = '1e-3' is not allowed; expected a positive number"),
        ("epochs: 3\n", "params.yaml:1: unknown key 'epochs'"),
    ],
)
def test_bad_params_fail_before_work(tmp_path, params_text, expected):
    (tmp_path / "params.yaml").write_text(params_text)
    out = tmp_path / "data" / "raw"
    proc = _run("fetch.py", "--out", "data/raw", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"fetch: error: {expected}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_a_params_file_missing_a_key_is_refused_by_name(tmp_path):
    """A stage reads every value from params.yaml (DVC tracks it there), never a default."""
    params = full_params()
    del params["train"]["schedule"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _run("fetch.py", "--out", "data/raw", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fetch: error: params.yaml: does not set 'train.schedule' (default 'constant')" in proc.stderr
    assert not (tmp_path / "data" / "raw").exists()


def test_missing_input_data_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text(params_text({"seed": 1}))
    proc = _run("preprocess.py", "--raw", "data/raw", "--out", "data/processed", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train-images-idx3-ubyte.gz: file not found; run the fetch stage first" in proc.stderr
    assert not (tmp_path / "data" / "processed").exists()


def test_bf16_runs_where_the_cpu_has_it_and_is_refused_in_one_line_where_not(tmp_path):
    """`dvc exp run -S train.precision=bf16`, as the stage sees it: on a CPU with native bf16
    (AVX512-BF16, AMX-BF16) the AE trains and records bf16 as its device; on one without, the
    stage stops before any training or MLflow run with one line naming the CPU and what it lacks."""
    import torch

    from mnist_codec.codecs import device as devices

    from smoke import env_for, make_project

    root = make_project(tmp_path / "p")
    (root / "params.yaml").write_text(params_text({"n_seeds": 1, "train": {"epochs": 1, "precision": "bf16"}}))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "train_ae.py"),
            "--data",
            "data/processed",
            "--out",
            "models/ae",
            "--curves",
            "reports/curves/ae",
        ],
        cwd=root,
        env=env_for(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    native, what = devices.bf16_support(torch.device("cpu"))
    if native:
        assert proc.returncode == 0, proc.stderr
        record = json.loads((root / "models/ae/seed0.json").read_text())
        assert ", bf16, " in record["device"]
        return
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = (
        f"train_ae: error: params: 'train.precision' = 'bf16' but {devices.device_label(torch.device('cpu'))} "
        f"has {what}; bf16 there would be emulated, slower than fp32: use train.precision=fp32"
    )
    assert line in proc.stderr.splitlines()
    assert "no AVX512-BF16, AMX-BF16 or ARM BF16" in what
    assert not (root / "models").exists() and not (root / "mlflow.db").exists()  # nothing trained, no run opened
