"""What a stage pays for: the timing records the benchmark splits into each stage's own
work and its fixed cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import clean_env, write_raw_dir
from mnist_codec import timing

REPO = Path(__file__).resolve().parents[1]


def test_work_sums_per_label_and_the_record_is_written_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(timing, "_work", {})
    with timing.work("fit"):
        pass
    with timing.work("fit"):
        sum(range(10_000))
    with pytest.raises(ValueError):
        with timing.work("figures"):  # time up to a failure still counts
            raise ValueError
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
    code = ("import time; time.sleep(0.5)\n"
            "from mnist_codec import timing\n"
            "print(timing.process_seconds())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**clean_env(), "PYTHONPATH": str(REPO / "src")}).stdout
    assert 0.5 <= float(out) < 5.0


def test_a_stage_script_appends_its_timing_record(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", n_train=20, n_test=5)
    for d in ("data", ".dvc"):
        (tmp_path / d).mkdir(exist_ok=True)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    out = tmp_path / "timings.jsonl"
    env = {**clean_env(), "PYTHONPATH": str(REPO / "src"), timing.ENV: str(out)}
    subprocess.run([sys.executable, str(REPO / "stages/preprocess.py"), "--raw", str(raw), "--out", "data/processed"],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["stage"] == "preprocess" and list(rec["work"]) == ["preprocess"]
    assert 0 < rec["work"]["preprocess"] < rec["seconds"]
