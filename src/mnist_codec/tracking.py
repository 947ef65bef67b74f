"""The one place that talks to MLflow.

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

import hashlib
import os
import re
import subprocess
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .interrupts import deferred

EXPERIMENT = "mnist-codec"


def repo_root(start: str | Path | None = None) -> Path:
    """``DVC_ROOT`` if set, else the nearest folder above ``start`` holding .dvc, else ``start``."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    from .fileio import workspace_root

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
    from mlflow.environment_variables import (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
                                              MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
                                              MLFLOW_HTTP_REQUEST_MAX_RETRIES)

    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    factor, jitter = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(), MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get()
    return retries, sum(min(factor * 2 ** (n - 1), 120) for n in range(2, retries + 1)) + retries * jitter


def show_retries() -> None:
    """Print each retry of a request to the tracking server. urllib3 reports them at WARNING
    to its own NullHandler, so a stage waiting for a server that went away would look hung."""
    import logging

    logger = logging.getLogger("urllib3.connectionpool")
    if any(getattr(h, "mnist_codec", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("tracking server: %(message)s"))
    handler.mnist_codec = True
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
    if any(s in text for s in ("Max retries exceeded", "Connection refused", "ConnectionError",
                               "Failed to establish a new connection")):
        retries, seconds = retry_window()
        tries = f"{retries} {'retry' if retries == 1 else 'retries'}"
        return (f"the MLflow tracking server {uri} did not answer ({tries} over about {seconds:.0f} s; "
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR set the window); "
                f"runs this stage opened are ended FAILED by the next stage that reaches the server")
    if re.search(r"error code 401\b", text) or exc.error_code == "UNAUTHENTICATED":
        return (f"the MLflow tracking server {uri} refused the login: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to a user of that server")
    if re.search(r"error code 403\b", text) or exc.error_code == "PERMISSION_DENIED":
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(anonymous)")
        return (f"the MLflow tracking server {uri} refused user {user!r}: no permission to write to this experiment "
                "or model; an admin grants it (README, Working as a team)")
    return None


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}; lists become comma-joined text."""
    flat: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        else:
            flat[name] = value
    return flat


def pipeline_id(commit: str, exp_name: str, params: dict[str, Any]) -> str:
    """Shared tag of all runs of one pipeline configuration (commit, experiment, params)."""
    text = repr((commit, exp_name, sorted(flatten(params).items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def entry_point(argv0: str) -> str:
    """The script a run came from, relative to the repository (stages/pca.py), else as given."""
    from .fileio import workspace_root

    path = Path(argv0).resolve()
    try:
        return path.relative_to(workspace_root()).as_posix()
    except ValueError:
        return path.name or argv0


def base_tags(stage: str, all_params: dict[str, Any]) -> dict[str, str]:
    """Tags every run carries: MLflow's source tags, host, commit, DVC experiment, stage,
    pipeline id, protocol.

    ``all_params`` is the whole params file, so every stage of one execution shares the id.
    """
    import socket
    import sys

    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

    commit = git_commit()
    exp_name = os.environ.get("DVC_EXP_NAME") or "workspace"
    return {
        # MLflow's own source tags fill the UI's Source column: the stage script and commit
        MLFLOW_SOURCE_NAME: entry_point(sys.argv[0]),
        MLFLOW_SOURCE_TYPE: "LOCAL",
        MLFLOW_GIT_COMMIT: commit,
        "mnist_codec.host": socket.gethostname(),
        "mnist_codec.stage": stage,
        "mnist_codec.git_commit": commit,
        "mnist_codec.dvc_exp": exp_name,
        "mnist_codec.pipeline": pipeline_id(commit, exp_name, all_params),
        "mnist_codec.protocol": str(all_params.get("data", {}).get("protocol", "")),
    }


def _experiment_id(client, root: Path) -> str:
    """The experiment's id, created if needed: artifacts in ``root``/mlruns for a local store,
    where the server says (its artifact proxy) for a tracking server."""
    from .errors import DataError

    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    server = is_server(client.tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if server and exp.artifact_location.startswith(("file:", "/")):
            raise DataError(f"experiment {name!r} on {client.tracking_uri} keeps its artifacts at "
                            f"{exp.artifact_location}, a folder of one machine; use another experiment "
                            "(MLFLOW_EXPERIMENT_NAME) so the server's artifact proxy stores them")
        return exp.experiment_id
    try:
        location = None if server else (root / "mlruns").as_uri()
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextmanager
def _store_lock(uri: str, root: Path) -> Iterator[None]:
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


def settle_unterminated(client, root: Path) -> list[str]:
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


class Run:
    """One MLflow run, addressed by id, so several can be open at once (one per model).

    Metrics, figures and texts go through an ``MlflowClient``; nothing relies on the fluent
    API's per-thread "active run".
    """

    def __init__(self, client, run_id: str, tags: dict[str, str] | None = None):
        self._client = client
        self.run_id = run_id
        self.tags = dict(tags or {})  # the tags it was created with

    def log_epoch(self, epoch: int, train_loss: float, eval_loss: float) -> None:
        self.log_metrics({"train_loss": train_loss, "eval_loss": eval_loss}, step=epoch)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with deferred():
            self._client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        with deferred():
            self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_figure(self, figure, filename: str) -> None:
        with deferred():
            self._client.log_figure(self.run_id, figure, filename)

    def log_text(self, text: str, filename: str) -> None:
        with deferred():
            self._client.log_text(self.run_id, text, filename)

    def log_inputs(self, datasets: list["DatasetRef"]) -> None:
        """Record the data splits the run used (MLflow's Dataset column): name, digest, source."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = []
        for d in datasets:
            with warnings.catch_warnings():  # a file URI matches MLflow's local source twice; either is right
                warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
                source = resolve_dataset_source(d.source)
            ds = MetaDataset(source, name=d.name, digest=d.digest)
            inputs.append(DatasetInput(ds._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, d.context)]))
        with deferred():
            self._client.log_inputs(self.run_id, datasets=inputs)

    def log_model(self, model, spec: dict, example, version_tags: dict[str, str]) -> "Registration":
        """Log a codec as an MLflow pyfunc model and register it in the Model Registry.

        The model is logged *as code* (``served_model.py``) with its spec and weights as
        non-pickle artifacts (see :mod:`mnist_codec.serving`), with signature and input
        example; requirements are given, not inferred. A version whose
        ``mnist_codec.fingerprint`` tag equals this one's (same codec, params, seed, data
        and code) is reused instead of registering a duplicate.
        """
        import tempfile

        import mlflow
        import numpy as np
        import torch

        from . import serving

        torch_version = torch.__version__.split("+")[0]
        mlflow.set_tracking_uri(self._client.tracking_uri)  # the fluent API below must use this run's store
        with tempfile.TemporaryDirectory() as tmp, deferred(), quiet_mlflow(), \
                mlflow.start_run(run_id=self.run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(serving.CODE_FILE),
                artifacts=serving.write_artifacts(model, spec, Path(tmp)),
                signature=serving.signature(),
                input_example=(example, {"mode": serving.DEFAULT_MODE}),
                pip_requirements=[f"torch=={torch_version}", f"numpy=={np.__version__}",
                                  f"mlflow=={mlflow.__version__}", "mnist-codec"],
            )
        return register(self._client, info.model_uri, self.run_id, version_tags)


# --- the Model Registry --------------------------------------------------------------------

REGISTERED_MODEL = "mnist-codec"  # every codec, every seed: one registered model, told apart by tags
CHAMPION = "champion"  # the alias of the version to serve
FINGERPRINT_TAG = "mnist_codec.fingerprint"


@dataclass(frozen=True)
class DatasetRef:
    """A data split as MLflow's Dataset column shows it."""

    name: str  # e.g. mnist-holdout-train
    digest: str  # MLflow keeps at most 36 characters: the first 32 of the SHA-256
    source: str  # where the split lives (a path or URL)
    context: str  # training | evaluation


@dataclass(frozen=True)
class Registration:
    """A registered model version: a new one, or the one with the same fingerprint."""

    name: str
    version: str


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's progress bars and notes on logging a model are noise in a stage's log."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    loggers = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.models.model", "mlflow.tracking._model_registry.fluent",
                                              "mlflow.store.model_registry.abstract_store")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def find_version(client, fingerprint: str, name: str = REGISTERED_MODEL):
    """The registered version carrying this fingerprint, or None."""
    found = client.search_model_versions(f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def register(client, model_uri: str, run_id: str, tags: dict[str, str], name: str = REGISTERED_MODEL) -> Registration:
    """Register ``model_uri`` as a new version of ``name`` with ``tags``, unless a version
    with the same fingerprint exists; the run is tagged with the version either way."""
    import mlflow

    with deferred():
        existing = find_version(client, tags[FINGERPRINT_TAG], name) if FINGERPRINT_TAG in tags else None
        if existing is not None:
            reg = Registration(name, str(existing.version))
        else:
            with quiet_mlflow():
                mv = mlflow.register_model(model_uri, name, tags=tags)
            reg = Registration(name, str(mv.version))
        client.set_tag(run_id, "mnist_codec.model_version", f"{name}/{reg.version}")
    return reg


def registry_client():
    """A client on the project's store (the registry lives in the tracking store)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri(repo_root()))


def tag_versions(client, tags_by_version: dict[str, dict[str, str]], name: str = REGISTERED_MODEL) -> None:
    with deferred():
        for version, tags in tags_by_version.items():
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, str(value))


def champion(client, name: str = REGISTERED_MODEL) -> tuple[str, dict[str, str]] | None:
    """(version, its tags) of the version the alias points at, or None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return str(mv.version), dict(mv.tags)


def set_champion(client, version: str, name: str = REGISTERED_MODEL) -> None:
    with deferred():
        client.set_registered_model_alias(name, CHAMPION, version)


@dataclass(frozen=True)
class RunSpec:
    """What one run records at its start: its name, the params it used, and its own tags.

    ``parent`` is the index, in the same list of specs, of the run this one is nested under
    (MLflow's UI folds children under their parent): a codec's run holds one child per seed.
    """

    name: str
    params: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)
    parent: int | None = None


@contextmanager
def start_runs(specs: list[RunSpec], stage: str, all_params: dict[str, Any]) -> Iterator[list[Run]]:
    """Open one MLflow run per spec; end them FINISHED, or KILLED (Ctrl-C, SIGTERM) or FAILED.

    ``all_params`` is the whole params file: it identifies the pipeline execution in the
    shared ``mnist_codec.pipeline`` tag.
    """
    import mlflow
    from mlflow.entities import Param

    root = repo_root()
    uri = tracking_uri(root)
    if is_server(uri):
        show_retries()
    with _store_lock(uri, root), deferred():  # a new store is created and migrated here: one process at a time
        client = mlflow.MlflowClient(uri)
        experiment_id = _experiment_id(client, root)
        settle_unterminated(client, root)
    runs: list[Run] = []
    status = "FINISHED"
    try:
        common = base_tags(stage, all_params)  # one git call and one pipeline id for all the runs
        for spec in specs:
            tags = {**common, **spec.tags}
            if spec.parent is not None:
                tags["mlflow.parentRunId"] = runs[spec.parent].run_id
            with deferred():
                run = client.create_run(experiment_id, run_name=spec.name, tags=tags)
                runs.append(Run(client, run.info.run_id, tags))
                client.log_batch(run.info.run_id,
                                 params=[Param(k, str(v)) for k, v in flatten(spec.params).items()])
        yield runs
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        ended = 0
        try:
            with deferred():
                for run in runs:
                    client.set_terminated(run.run_id, status)
                    ended += 1
        except Exception:
            # The store is gone (a server past its retries): leave a note so that the next
            # stage reaching it ends these runs, FAILED; then report the first error.
            remember_unterminated(root, uri, [r.run_id for r in runs[ended:]], status)
            if status == "FINISHED":
                raise


@contextmanager
def start_run(run_name: str, stage: str, params: dict[str, Any], tags: dict[str, str] | None = None,
              all_params: dict[str, Any] | None = None) -> Iterator[Run]:
    """One run; see start_runs. ``all_params`` defaults to ``params``."""
    with start_runs([RunSpec(run_name, params, tags or {})], stage, all_params or params) as runs:
        yield runs[0]


def model_uri(ref: str, name: str = REGISTERED_MODEL) -> str:
    """``models:/`` URI of a version given by number (``3``) or alias (``champion``)."""
    ref = str(ref).strip()
    if not ref:
        raise ValueError("empty model reference")
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def load_served(ref: str = CHAMPION, name: str = REGISTERED_MODEL):
    """(pyfunc model, its URI) of a registered version, loaded as it is served.

    Raises DataError naming the store when the version or alias does not exist.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from .errors import DataError

    uri = tracking_uri(repo_root())
    mlflow.set_tracking_uri(uri)
    target = model_uri(ref, name)
    with quiet_mlflow():
        try:
            return mlflow.pyfunc.load_model(target), target
        except MlflowException as exc:
            raise DataError(f"{target}: not found in the MLflow store {uri} ({exc.message.splitlines()[0]}); "
                            f"`make repro` registers the codecs and sets '{CHAMPION}'") from None
