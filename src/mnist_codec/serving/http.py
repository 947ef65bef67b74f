"""``mnist-codec serve`` (``make serve-model``): a registered codec over HTTP on 127.0.0.1,
with MLflow's own scoring server (``mlflow models serve``) in this environment.

MLflow starts its web server (uvicorn) by name, so a bare ``.venv/bin/mlflow models serve``
without an activated venv fails with exit code 127. This command puts its own interpreter's
folder first on PATH and names the store, so ``.venv/bin/mnist-codec serve`` works from any
shell. No conda, no downloads: ``--env-manager local``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def command(ref: str, port: int, host: str = "127.0.0.1") -> tuple[list[str], dict[str, str]]:
    """(``mlflow models serve`` command line, its environment) for the version or alias ``ref``."""
    from ..tracking.registry import model_uri
    from ..tracking.store import repo_root, tracking_uri

    bin_dir = str(Path(sys.executable).parent)
    cmd = [
        str(Path(bin_dir) / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri(ref),
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": tracking_uri(repo_root()),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    return cmd, env


def run(ref: str, port: int) -> None:
    """Become the scoring server (exec)."""
    cmd, env = command(ref, port)
    print(f"mnist-codec serve: {cmd[4]} on http://127.0.0.1:{port}/invocations (Ctrl-C stops it)", flush=True)
    os.execve(cmd[0], cmd, env)
