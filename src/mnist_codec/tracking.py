"""The one place that talks to MLflow.

Store: ``sqlite:///<root>/mlflow.db`` with artifacts in ``<root>/mlruns``, where root is
``DVC_ROOT`` (set by DVC for workspace, --temp and queued runs alike) or the repository
found above the working directory. ``MLFLOW_TRACKING_URI`` overrides the store.
MLflow is imported only when a run starts: it costs over a second.
"""

from __future__ import annotations

import hashlib
import os
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


def base_tags(stage: str, all_params: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, str]:
    """Tags every run carries: commit, DVC experiment, stage, pipeline id, protocol.

    ``all_params`` is the whole params file, so every stage of one execution shares the id.
    """
    commit = git_commit()
    exp_name = os.environ.get("DVC_EXP_NAME") or "workspace"
    tags = {
        "mnist_codec.stage": stage,
        "mnist_codec.git_commit": commit,
        "mnist_codec.dvc_exp": exp_name,
        "mnist_codec.pipeline": pipeline_id(commit, exp_name, all_params),
        "mnist_codec.protocol": str(all_params.get("data", {}).get("protocol", "")),
    }
    tags.update(extra or {})
    return tags


def _experiment_id(client, root: Path) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=(root / "mlruns").as_uri())
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


class Run:
    """One MLflow run, addressed by id, so several can be open at once (one per model).

    Metrics, figures and texts go through an ``MlflowClient``; nothing relies on the fluent
    API's per-thread "active run".
    """

    def __init__(self, client, run_id: str):
        self._client = client
        self.run_id = run_id

    def log_epoch(self, epoch: int, train_loss: float, eval_loss: float) -> None:
        self.log_metrics({"train_loss": train_loss, "eval_loss": eval_loss}, step=epoch)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with deferred():
            self._client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_figure(self, figure, filename: str) -> None:
        with deferred():
            self._client.log_figure(self.run_id, figure, filename)

    def log_text(self, text: str, filename: str) -> None:
        with deferred():
            self._client.log_text(self.run_id, text, filename)

    def log_model(self, model, example) -> None:
        """Log a torch codec with signature and input example; requirements are given, not inferred."""
        import mlflow
        import mlflow.pytorch
        import numpy as np
        import torch
        from mlflow.models import infer_signature

        with torch.no_grad():
            output = model(torch.from_numpy(example)).numpy()
        torch_version = torch.__version__.split("+")[0]
        mlflow.set_tracking_uri(self._client.tracking_uri)  # the fluent API below must use this run's store
        with deferred(), warnings.catch_warnings(), mlflow.start_run(run_id=self.run_id):
            # torch.export warns about buffers (PCA's mean and components) that it saves anyway.
            warnings.filterwarnings("ignore", message="No complete tensor found")
            mlflow.pytorch.log_model(
                model,
                name="model",
                serialization_format="pt2",  # torch.export: loading it runs no pickled code
                signature=infer_signature(example, output),
                input_example=example,
                pip_requirements=[f"torch=={torch_version}", f"numpy=={np.__version__}",
                                  f"mlflow=={mlflow.__version__}"],
            )


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
    with _store_lock(uri, root), deferred():  # a new store is created and migrated here: one process at a time
        client = mlflow.MlflowClient(uri)
        experiment_id = _experiment_id(client, root)
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
                runs.append(Run(client, run.info.run_id))
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
        with deferred():
            for run in runs:
                client.set_terminated(run.run_id, status)


@contextmanager
def start_run(run_name: str, stage: str, params: dict[str, Any], tags: dict[str, str] | None = None,
              all_params: dict[str, Any] | None = None) -> Iterator[Run]:
    """One run; see start_runs. ``all_params`` defaults to ``params``."""
    with start_runs([RunSpec(run_name, params, tags or {})], stage, all_params or params) as runs:
        yield runs[0]
