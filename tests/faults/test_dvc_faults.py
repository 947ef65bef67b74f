"""DVC under concurrency and interruption: two `dvc repro` at once, and Ctrl-C during a training
stage (a queued sweep with two workers: tests/test_sweep.py's `make sweep`).

Slow: each runs the real pipeline on the tiny profile (plumbing, not numbers) in a throw-away
copy of the project.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import TINY, project_copy, project_env, sh, store_runs
from services import ctrl_c_as_in_a_terminal, read_until

pytestmark = pytest.mark.full


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return project_copy(tmp_path_factory.mktemp("dvc-faults") / "repo", TINY)


def test_two_repros_at_once_one_runs_the_other_gets_the_lock_error(repo):
    def start() -> subprocess.Popen:
        return subprocess.Popen(
            ["dvc", "repro"],
            cwd=repo,
            env=project_env(repo),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    first = start()
    seen = read_until(first, lambda line: line.startswith("Running stage"))  # it holds the repo lock then
    second = start()
    out2, _ = second.communicate(timeout=300)
    rest, _ = first.communicate(timeout=900)
    out1 = "".join(seen) + rest
    assert first.returncode == 0, out1
    # DVC's lock: the repo lock, or the per-output lock the first run holds
    assert second.returncode != 0, out2
    assert "Unable to acquire lock" in out2 or (
        "is busy, it is being blocked by" in out2 and f"(PID {first.pid})" in out2
    ), out2
    assert "Running stage" not in out2
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout
    metrics = (repo / "reports/metrics.json").read_bytes()
    # the same result as a run alone
    sh(repo, "dvc", "repro", "--force")
    assert (repo / "reports/metrics.json").read_bytes() == metrics


def test_ctrl_c_during_a_training_stage_then_dvc_repro_resumes_and_succeeds(repo):
    import signal

    import yaml

    sh(repo, "dvc", "repro")
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["train"]["epochs"] = 40  # long enough to be interrupted mid-stage
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        runs_before = {r.info.run_id for r in store_runs(repo)[0]}
        # a terminal's foreground job: its own process group, and SIGINT not ignored (a shell that
        # starts CI in the background makes its jobs ignore SIGINT, and children inherit that)
        proc = subprocess.Popen(
            ["dvc", "repro"],
            cwd=repo,
            env=project_env(repo),
            start_new_session=True,
            preexec_fn=ctrl_c_as_in_a_terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen = read_until(proc, lambda line: "deep_relu/seed1: epoch 3/40" in line)
        assert seen and "epoch 3/40" in seen[-1], "".join(seen)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) != 0, "".join(seen) + rest
        assert not (repo / "models" / "deep").exists()
        killed = [
            r
            for r in store_runs(repo)[0]
            if r.info.run_id not in runs_before and r.data.tags["mnist_codec.stage"] == "train_deep"
        ]
        assert sorted(r.info.status for r in killed) == ["KILLED"] * 3  # the codec and its 2 seeds

        again = sh(repo, "dvc", "repro")
        assert "Running stage 'train_deep'" in again.stdout
        assert "resuming after epoch" in again.stdout + again.stderr
        assert (repo / "models" / "deep" / "deep_relu" / "seed1.pt").is_file()
        assert not (repo / "models" / ".checkpoints").exists()
        assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout
    finally:
        params_file.write_text(original)
