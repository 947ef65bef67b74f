"""Stage scripts: bad input is one clear line on stderr and exit code 2, no traceback."""

import subprocess
import sys

import pytest
import yaml

from conftest import REPO, full_params, params_text


def _run(script, *args, cwd):
    return subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# Every key's wording is held once, in tests/faults/test_params_faults.py; here a stage process
# turns a bad value and an unknown key into that one line, before any work.
@pytest.mark.parametrize("params_text, expected", [
    ("train:\n  lr: 1e-3\n", "'train.lr' = '1e-3' is not allowed; expected a positive number"),
    ("epochs: 3\n", "unknown key 'epochs'"),
])
def test_bad_params_fail_before_work(tmp_path, params_text, expected):
    (tmp_path / "params.yaml").write_text(params_text)
    out = tmp_path / "data" / "raw"
    proc = _run("fetch.py", "--out", "data/raw", cwd=tmp_path)
    assert proc.returncode == 2
    assert "fetch: error: params: " in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_a_params_file_missing_a_key_is_refused_by_name(tmp_path):
    """A stage reads every value from params.yaml (DVC tracks it there), never a default."""
    params = full_params()
    del params["train"]["schedule"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _run("fetch.py", "--out", "data/raw", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fetch: error: params: params.yaml does not set 'train.schedule' (default 'constant')" in proc.stderr
    assert not (tmp_path / "data" / "raw").exists()


def test_missing_input_data_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text(params_text({"seed": 1}))
    proc = _run("preprocess.py", "--raw", "data/raw", "--out", "data/processed", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train-images-idx3-ubyte.gz: file not found; run the fetch stage first" in proc.stderr
    assert not (tmp_path / "data" / "processed").exists()
