"""``mnist-codec ui`` (``make ui``): MLflow's UI on this checkout's own store, bound to
127.0.0.1, opened on the experiment's training runs.

The experiment is looked up (or created, with its kind tag, see
:func:`mnist_codec.tracking.store.experiment_id`) before the UI starts, so the address printed
is the runs table itself: parents expandable into their seeds, the Chart view beside it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .server import JOB_EXECUTION_ENV
from .store import experiment_id, repo_root, store_lock


def runs_url(host: str, port: int, exp_id: str) -> str:
    """The address of an experiment's training runs table in MLflow's UI, in its model-training
    view (the UI's own switch, ``workflowType``; its default is the GenAI view)."""
    return f"http://{host}:{port}/#/experiments/{exp_id}/runs?workflowType=machine_learning"


def command(root: Path, port: int, host: str = "127.0.0.1") -> tuple[list[str], dict[str, str], str]:
    """(``mlflow ui`` command line, its environment, the runs table's address) for the store of
    the checkout at ``root``. The environment puts this interpreter's folder first on PATH, so
    the UI's own helpers are found without an activated venv."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    with store_lock(uri, root):
        exp_id = experiment_id(mlflow.MlflowClient(uri), root)
    bin_dir = str(Path(sys.executable).parent)
    cmd = [
        str(Path(bin_dir) / "mlflow"),
        "ui",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        str(root / "mlruns"),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)  # the UI shows this checkout's store, named on its command line
    # MLflow's background job workers serve GenAI evaluation, which these runs never use: without
    # them the UI starts in seconds and leaves no worker processes behind
    env[JOB_EXECUTION_ENV] = "false"
    return cmd, env, runs_url(host, port, exp_id)


def run(port: int) -> None:
    """Become the UI (exec), after printing where its runs table is."""
    root = repo_root()
    cmd, env, url = command(root, port)
    print(f"mnist-codec ui: the training runs are at {url} (Ctrl-C stops the UI)", flush=True)
    os.execve(cmd[0], cmd, env)
