"""The MLflow store: where it is, the experiment, one process at a time opening a new one,
a tracking server that does not answer, the runs a stage could not end, and MLflow's own
progress bars and notes kept out of a stage's log (:func:`quiet_mlflow`).

Store: ``sqlite:///<root>/mlflow.db`` with artifacts in ``<root>/mlruns``, where root is
``DVC_ROOT`` (set by DVC for workspace, --temp and queued runs alike) or the repository
found above the working directory. ``MLFLOW_TRACKING_URI`` overrides the store; pointed at a
tracking server (``http://…``, ``make server``), the experiment is created with the server's
artifact location, so models and figures go through the server's artifact proxy too, and the
standard ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` log in. A server that stays
unreachable past MLflow's retries fails the stage with one clear line (:func:`failure_message`);
the runs it could not end are ended FAILED by the next stage that reaches the server.
MLflow is imported only when a run starts: it costs over a second.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..interrupts import deferred

if TYPE_CHECKING:
    from mlflow import MlflowClient


EXPERIMENT = "mnist-codec"
# MLflow's UI opens an experiment by its kind: this one opens on its training runs table,
# not on the GenAI overview it guesses for an experiment without the tag.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def repo_root(start: str | Path | None = None) -> Path:
    """``DVC_ROOT`` if set, else the nearest folder above ``start`` holding .dvc, else ``start``."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    from ..workspace import workspace_root

    return workspace_root(start)


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def is_server(uri: str) -> bool:
    """True for a tracking server (REST over HTTP), False for a database or folder store."""
    return uri.startswith(("http://", "https://"))


def retry_window() -> tuple[int, float]:
    """(retries, seconds) a request to a tracking server keeps trying at most, from MLflow's
    settings: urllib3 retries the first failure at once and waits ``factor * 2**(n-1)``
    seconds (at most 120) after the n-th, each wait plus up to ``jitter`` seconds."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    )

    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    factor, jitter = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(), MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get()
    return retries, sum(min(factor * 2 ** (n - 1), 120) for n in range(2, retries + 1)) + retries * jitter


def show_retries() -> None:
    """Print each retry of a request to the tracking server. urllib3 reports them at WARNING
    to its own NullHandler, so a stage waiting for a server that went away would look hung."""
    import logging

    logger = logging.getLogger("urllib3.connectionpool")
    if any(h.get_name() == "mnist_codec" for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("tracking server: %(message)s"))
    handler.set_name("mnist_codec")
    logger.addHandler(handler)


def failure_message(exc: BaseException) -> str | None:
    """One line for a tracking server that did not answer or refused this user, else None."""
    import sys

    if "mlflow" not in sys.modules:
        return None
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return None
    text = str(exc)
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if any(
        s in text
        for s in (
            "Max retries exceeded",
            "Connection refused",
            "ConnectionError",
            "Failed to establish a new connection",
        )
    ):
        retries, seconds = retry_window()
        tries = f"{retries} {'retry' if retries == 1 else 'retries'}"
        return (
            f"the MLflow tracking server {uri} did not answer ({tries} over about {seconds:.0f} s; "
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR set the window); "
            f"runs this stage opened are ended FAILED by the next stage that reaches the server"
        )
    if re.search(r"error code 401\b", text) or exc.error_code == "UNAUTHENTICATED":
        return (
            f"the MLflow tracking server {uri} refused the login: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to a user of that server"
        )
    if re.search(r"error code 403\b", text) or exc.error_code == "PERMISSION_DENIED":
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(anonymous)")
        return (
            f"the MLflow tracking server {uri} refused user {user!r}: no permission to write to this experiment "
            "or model; an admin grants it (docs: Working as a team)"
        )
    return None


def experiment_name() -> str:
    """The MLflow experiment every run goes to: ``$MLFLOW_EXPERIMENT_NAME``, else mnist-codec."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT


def experiment_id(client: MlflowClient, root: Path) -> str:
    """The experiment's id, created if needed: artifacts in ``root``/mlruns for a local store,
    where the server says (its artifact proxy) for a tracking server."""
    from ..errors import DataError

    name = experiment_name()
    server = is_server(client.tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if server and exp.artifact_location.startswith(("file:", "/")):
            raise DataError(
                f"experiment {name!r} on {client.tracking_uri} keeps its artifacts at "
                f"{exp.artifact_location}, a folder of one machine; use another experiment "
                "(MLFLOW_EXPERIMENT_NAME) so the server's artifact proxy stores them"
            )
        if exp.tags.get(KIND_TAG) != KIND:  # created before the tag was set
            client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
        return exp.experiment_id
    try:
        location = None if server else (root / "mlruns").as_uri()
        return client.create_experiment(name, artifact_location=location, tags={KIND_TAG: KIND})
    except Exception:  # another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextmanager
def store_lock(uri: str, root: Path) -> Iterator[None]:
    """Exclusive lock while a local sqlite store is opened: processes starting together (a
    queued sweep with ``-j 2``) would otherwise race to create its tables."""
    if not uri.startswith("sqlite:"):
        yield
        return
    import fcntl

    lock_dir = root / "mlruns"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".store.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- runs a stage could not end (the server was gone) -------------------------------------

JOURNAL = "mlruns/.unterminated.jsonl"  # under the repository root; mlruns/ is in .gitignore and .dvcignore


def _journal_path(root: Path) -> Path:
    return root / JOURNAL


def remember_unterminated(root: Path, uri: str, run_ids: list[str], status: str) -> None:
    import json

    path = _journal_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for run_id in run_ids:
            fh.write(json.dumps({"uri": uri, "run_id": run_id, "status": status}) + "\n")


def settle_unterminated(client: MlflowClient, root: Path) -> list[str]:
    """End the runs an earlier stage left open on this store; returns their ids. Entries for
    other stores stay in the journal."""
    import json

    path = _journal_path(root)
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    from mlflow.exceptions import MlflowException

    settled, kept = [], []
    for e in entries:
        if e["uri"] == client.tracking_uri:
            try:
                with deferred():
                    client.set_terminated(e["run_id"], "FAILED" if e["status"] == "FINISHED" else e["status"])
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # a run deleted since: nothing to end
                    raise
            settled.append(e["run_id"])
        else:
            kept.append(e)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in kept))
    os.replace(tmp, path)
    return settled


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's progress bars and notes on logging a model are noise in a stage's log."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    loggers = [
        logging.getLogger(n)
        for n in (
            "mlflow.pyfunc",
            "mlflow.models.model",
            "mlflow.tracking._model_registry.fluent",
            "mlflow.store.model_registry.abstract_store",
        )
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
