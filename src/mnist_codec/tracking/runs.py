"""MLflow runs: several open at once (one per model, :class:`Run`), started together with
their tags (:mod:`.tags`), params and dataset inputs, ended together even on Ctrl-C. A side
channel of the stages: what is logged changes no DVC output.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import keys
from ..interrupts import deferred
from .store import (
    experiment_id,
    is_server,
    remember_unterminated,
    repo_root,
    settle_unterminated,
    show_retries,
    store_lock,
    tracking_uri,
)
from .tags import base_tags

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from mlflow import MlflowClient


@dataclass(frozen=True)
class DatasetRef:
    """A data split as MLflow's Dataset column shows it."""

    name: str  # e.g. mnist-holdout-train
    digest: str  # MLflow keeps at most 36 characters: the first 32 of the SHA-256
    source: str  # where the split lives (a path or URL)
    context: str  # training | evaluation


def flatten(d: dict[str, Any]) -> dict[str, Any]:
    """Params as MLflow records them: {'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}, lists as
    comma-joined text."""
    return {k: ",".join(str(v) for v in x) if isinstance(x, (list, tuple)) else x for k, x in keys.flatten(d).items()}


EXAMPLE_ROWS = 5  # rows in a logged model's input example


def split_datasets(data_dir: Path, meta: dict) -> list[DatasetRef]:
    """The training and evaluation splits (``meta``: their meta.json) as MLflow datasets:
    name, SHA-256 digest, source."""
    refs = []
    for split, context in (("train", "training"), ("eval", "evaluation")):
        sha = meta["splits"][split]["sha256"]
        source = (Path(data_dir) / f"{split}_x.npy").resolve().as_uri()
        refs.append(DatasetRef(f"mnist-{meta['protocol']}-{split}", sha[:32], source, context))
    return refs


def params_subset(params: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The params a stage uses, as a nested dict (what its MLflow runs record); ``params`` is
    the whole file as a dict, ``names`` top-level keys or ``section.key``."""
    return keys.subset(params, names)


class Run:
    """One MLflow run, addressed by id, so several can be open at once (one per model).

    Metrics, figures and texts go through an ``MlflowClient``; nothing relies on the fluent
    API's per-thread "active run".
    """

    def __init__(self, client: MlflowClient, run_id: str, tags: dict[str, str] | None = None):
        self._client = client
        self.run_id = run_id
        self.tags = dict(tags or {})  # the tags it was created with

    @property
    def client(self) -> MlflowClient:
        return self._client

    @property
    def tracking_uri(self) -> str:
        return str(self._client.tracking_uri)

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

    def log_figure(self, figure: Figure, filename: str) -> None:
        with deferred():
            self._client.log_figure(self.run_id, figure, filename)

    def log_text(self, text: str, filename: str) -> None:
        with deferred():
            self._client.log_text(self.run_id, text, filename)

    def log_table(self, table: pd.DataFrame, filename: str) -> None:
        """A table artifact (``mlflow.log_table``): the UI's Evaluation view shows it as rows."""
        with deferred():
            self._client.log_table(self.run_id, table, filename)

    def sibling(self, run_id: str) -> Run:
        """Another run of the same store, by id: e.g. a training run that this evaluation scores."""
        return Run(self._client, run_id)

    def log_inputs(self, datasets: list[DatasetRef]) -> None:
        """Record the data splits the run used (MLflow's Dataset column): name, digest, source."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.exceptions import MlflowException
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = []
        for d in datasets:
            with warnings.catch_warnings():  # a file URI matches MLflow's local source twice; either is right
                warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
                source = resolve_dataset_source(d.source)
            # MLflow's own code builds MetaDatasets so; only its type declares ``profile`` abstract
            ds = MetaDataset(source, name=d.name, digest=d.digest)  # type: ignore[abstract]
            inputs.append(DatasetInput(ds._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, d.context)]))
        for attempt in range(DATASET_RACE_TRIES):
            try:
                with deferred():
                    self._client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as e:
                # Two runs that log the same new dataset at once (two machines' stages against
                # one server): the store looks the dataset up, then inserts it, so one of them
                # hits the table's unique key. The other's row is committed by then, and logging
                # again links that row to this run.
                if attempt == DATASET_RACE_TRIES - 1 or not is_unique_violation(e):
                    raise
                time.sleep(0.2 * (attempt + 1))


DATASET_RACE_TRIES = 4
# How the stores word a duplicate of a unique key: SQLite, PostgreSQL, MySQL.
UNIQUE_VIOLATIONS = ("UNIQUE constraint failed", "violates unique constraint", "Duplicate entry")


def is_unique_violation(error: Exception) -> bool:
    """Whether an MLflow error is the store refusing a row that another writer inserted first."""
    return any(words in str(error) for words in UNIQUE_VIOLATIONS)


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


def run_name(spec: RunSpec, tags: dict[str, str]) -> str:
    """A top-level run says which run it is, since the UI's tables and charts label runs by
    name: a DVC experiment's carries the experiment's name (``deep_tanh (epochs-8)``), a
    workspace run its commit (``deep_tanh (main@1a2b3c4)``, ``-dirty`` where the code differs
    from it). A seed's run, folded under its codec's, keeps its own name."""
    exp = tags.get("mnist_codec.dvc_exp", "workspace")
    which = tags.get("mnist_codec.source", "") if exp == "workspace" else exp
    return spec.name if spec.parent is not None or not which else f"{spec.name} ({which})"


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
    with store_lock(uri, root), deferred():  # a new store is created and migrated here: one process at a time
        client = mlflow.MlflowClient(uri)
        exp_id = experiment_id(client, root)
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
                created = client.create_run(exp_id, run_name=run_name(spec, common), tags=tags)
                runs.append(Run(client, created.info.run_id, tags))
                client.log_batch(
                    created.info.run_id, params=[Param(k, str(v)) for k, v in flatten(spec.params).items()]
                )
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
def start_run(
    run_name: str,
    stage: str,
    params: dict[str, Any],
    tags: dict[str, str] | None = None,
    all_params: dict[str, Any] | None = None,
) -> Iterator[Run]:
    """One run; see start_runs. ``all_params`` defaults to ``params``."""
    with start_runs([RunSpec(run_name, params, tags or {})], stage, all_params or params) as runs:
        yield runs[0]
