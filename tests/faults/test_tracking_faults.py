"""The MLflow store under several writers at once: no run and no metric point lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import mlflow  # imported before the start signal, so the writers really overlap
    from mnist_codec.tracking import runs as truns

    go, k, epochs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    specs = [truns.RunSpec(f"writer{k}-model{j}", {"writer": k, "model": j}) for j in range(3)]
    while not go.exists():
        time.sleep(0.005)
    with truns.start_runs(specs, "train_deep", {"seed": k}) as runs:
        for epoch in range(1, epochs + 1):
            for j, run in enumerate(runs):
                run.log_epoch(epoch, k + j / 10 + 1 / epoch, k + j / 10 + 2 / epoch)
        for run in runs:
            run.log_metrics({"eval_mse": k + 0.5, "train_seconds": 1.0})
""")


@pytest.mark.full
def test_concurrent_writers_to_a_fresh_store_lose_nothing(tmp_path):
    import mlflow

    n_writers, epochs = 4, 20
    (tmp_path / ".dvc").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(go), str(k), str(epochs)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(n_writers)
    ]
    time.sleep(4)  # let every writer import MLflow; the store does not exist yet
    go.touch()
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == ["mnist-codec"]
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    assert len(runs) == n_writers * 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        k, j = int(run.data.params["writer"]), int(run.data.params["model"])
        for metric, offset in (("train_loss", 1), ("eval_loss", 2)):
            history = client.get_metric_history(run.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1))
            assert {m.step: m.value for m in history} == {e: k + j / 10 + offset / e for e in range(1, epochs + 1)}
        assert run.data.metrics["eval_mse"] == k + 0.5
