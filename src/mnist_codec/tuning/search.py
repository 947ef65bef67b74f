"""The search: Ray Tune runs the trials, Optuna's TPE sampler proposes them, ASHA stops weak ones.

``mnist-codec tune`` (``make tune``) reads ``tune.yaml`` (:mod:`.space`), opens the Optuna study
(``--storage``, an SQLAlchemy URL: by default ``sqlite:///.tune/optuna.db``; the team's
PostgreSQL lets a second machine resume or join the same study), and runs what the study has
left of its budget (trials and seconds of search, :func:`this_run_budget`) on a local Ray (every
process on 127.0.0.1) or on a cluster (``--cluster``; the package travels to the nodes with
``py_modules``):

* OptunaSearch asks the study for each trial's settings with a define-by-run space; TPE is
  seeded with ``seed`` plus the trials already in the study, so a resumed study goes on with
  new proposals, not the first run's again. A new study first runs the file's ``start_from``
  points;
* every trial (:mod:`.trial`) reports its validation MSE after each epoch, and ASHA (epochs as
  its budget, ``grace_epochs``, ``reduction_factor``) stops those in the bottom of their rung;
  the scheduler below records which it stopped and at which epoch;
* every trial is an MLflow run, a child of one tuning run per study (found again on resume);
  a trial ASHA stopped is ended KILLED with the epoch, one the time budget cut KILLED too;
* each Optuna trial keeps its MLflow run, its Ray trial and how it ended as user attributes,
  and the study keeps every search run's record (wall time, where, device, precision), so the
  proof (:mod:`.proof`) can state the whole search.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MnistCodecError
from .space import Spec
from .trial import VAL_METRIC, Context

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import FrozenTrial
    from ray.tune import Callback
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch


log = logging.getLogger(__name__)

DEFAULT_STORAGE_DIR = ".tune"
TUNING_RUN_ATTR = "mlflow_tuning_run"  # the study's user attribute: {tracking URI: run id}
RUNS_ATTR = "search_runs"  # the study's user attribute: one record per `mnist-codec tune` search
CUT = "cut by the time budget"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's nodes keep 127.0.0.1 (read when ray is imported)


class TuneError(MnistCodecError):
    """The search cannot start or its study cannot be read."""


def default_storage(root: Path) -> str:
    folder = root / DEFAULT_STORAGE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def open_study(storage: str, name: str) -> optuna.Study:
    """The study (created when new), minimising the validation MSE."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)
    except Exception as exc:  # an unreachable database, bad credentials, a bad URL
        raise TuneError(
            f"tune: cannot open the Optuna study {name!r} at {_redact(storage)}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


def _redact(url: str) -> str:
    from ..tracking.server import redact

    return redact(url)


def finished(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials that ended with a value (ASHA-stopped ones included)."""
    import optuna

    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]


def epochs_run(ot_trial: FrozenTrial) -> int:
    """Epochs a trial trained: recorded by the scheduler on every result (Optuna's intermediate
    values miss the last one, which Ray gives the searcher as the trial's end)."""
    return int(ot_trial.user_attrs.get("epochs", len(ot_trial.intermediate_values)))


def winner(study: optuna.Study, max_epochs: int) -> FrozenTrial | None:
    """The chosen settings: the lowest validation MSE among the study's trials that ran every
    epoch (an early stop's score is of a shorter training); None before any did."""
    full = [t for t in finished(study) if epochs_run(t) >= max_epochs]
    return min(full, key=lambda t: float("inf") if t.value is None else t.value) if full else None


def tuning_run(client: MlflowClient, experiment_id: str, study: optuna.Study, spec: Spec, storage: str) -> str:
    """The study's one tuning run in this store: found again from the study's attribute when it
    exists here (a resumed or joined search), else created."""
    runs = dict(study.user_attrs.get(TUNING_RUN_ATTR, {}))
    known = runs.get(client.tracking_uri)
    if known:
        try:
            run = client.get_run(known)
            if run.info.lifecycle_stage == "active":
                return known
        except Exception:  # not in this store any more
            pass
    tags = {
        "mnist_codec.stage": "tune",
        "mnist_codec.tune_study": spec.study,
        "mnist_codec.tune_storage": _redact(storage),
    }
    run_id = client.create_run(experiment_id, run_name=f"tune {spec.study}", tags=tags).info.run_id
    runs[client.tracking_uri] = run_id
    study.set_user_attr(TUNING_RUN_ATTR, runs)
    return run_id


def _mark(searcher: OptunaSearch, trial_id: str, **attrs: object) -> None:
    """Set user attributes on the Optuna trial behind a Ray trial (while it is still running:
    Optuna refuses to change a finished trial)."""
    ot = searcher._ot_trials.get(trial_id)  # OptunaSearch's own map: Ray trial -> Optuna trial
    if ot is None:
        return
    for key, value in attrs.items():
        try:
            ot.set_user_attr(key, value)
        except Exception as exc:  # finished already: the record falls back to its epochs
            log.warning("tune: could not record %s of trial %s: %s", key, trial_id, exc)


def _asha_recorder(spec: Spec, searcher: OptunaSearch, stopped: dict[str, int]) -> ASHAScheduler:
    """ASHA that records, on the Optuna trial, which trials it stopped before ``max_epochs`` and
    at which epoch, and which ran every epoch."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def __init__(self) -> None:
            super().__init__(
                time_attr="epoch",
                max_t=spec.max_epochs,
                grace_period=spec.grace_epochs,
                reduction_factor=spec.reduction_factor,
            )

        def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
            action = super().on_trial_result(tune_controller, trial, result)
            epoch = int(result.get("epoch", 0))
            _mark(searcher, trial.trial_id, epochs=epoch)
            if epoch >= spec.max_epochs:
                _mark(searcher, trial.trial_id, ended="finished")
            elif action == TrialScheduler.STOP:
                stopped[trial.trial_id] = epoch
                _mark(searcher, trial.trial_id, ended=f"asha stopped at epoch {epoch}")
            return action

    return RecordingASHA()


def _mlflow_callback(
    client: MlflowClient, searcher: OptunaSearch, stopped: dict[str, int], run_of: dict[str, str], max_epochs: int
) -> Callback:
    """Ends the MLflow run of a trial ASHA stopped (KILLED, with the epoch), of one the time
    budget cut (KILLED) and of one that errored (FAILED); keeps each Optuna trial's run id,
    Ray trial and node. ``stopped`` is what the scheduler recorded (trial -> epoch); ``run_of``
    (trial -> MLflow run id) is filled in here."""
    from ray.tune import Callback

    class Ends(Callback):
        def on_trial_result(
            self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: object
        ) -> None:
            run_id = result.get("mlflow_run_id")
            if run_id and trial.trial_id not in run_of:
                run_of[trial.trial_id] = run_id
                _mark(
                    searcher,
                    trial.trial_id,
                    mlflow_run_id=run_id,
                    ray_trial_id=trial.trial_id,
                    ray_node=str(result.get("node_id", ""))[:56],
                )

        def _end(self, trial: Trial, status: str, why: str) -> None:
            run_id = run_of.get(trial.trial_id)
            if run_id is None:
                return
            try:  # a stopped trial's thread may have ended its run already, as FAILED when interrupted
                current = client.get_run(run_id).info.status
                if current == "RUNNING" or (current == "FAILED" and status == "KILLED"):
                    client.set_tag(run_id, "mnist_codec.tune_end", why)
                    client.set_terminated(run_id, status)
            except Exception as exc:  # the store is gone: the study still says how it ended
                log.warning("tune: could not end MLflow run %s: %s", run_id, exc)

        def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: object) -> None:
            epoch = stopped.get(trial.trial_id)
            if epoch is not None:
                self._end(trial, "KILLED", f"asha stopped at epoch {epoch}")
            elif (trial.last_result or {}).get("epoch", 0) >= max_epochs:
                self._end(trial, "FINISHED", "finished")
            else:
                self._end(trial, "KILLED", CUT)

        def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: object) -> None:
            self._end(trial, "FAILED", "error")

    return Ends()


def ended(ot_trial: FrozenTrial) -> str:
    """How a finished Optuna trial of a search ended: ``finished``, ``asha stopped at epoch N``,
    or cut by the time budget (a trial whose end nothing recorded)."""
    return str(ot_trial.user_attrs.get("ended") or CUT)


@dataclass(frozen=True)
class Where:
    """A local Ray (``address`` None) or a cluster's address."""

    address: str | None = None

    @property
    def name(self) -> str:
        return "local" if self.address is None else f"cluster {self.address}"


def start_ray(where: Where, cpus: float | None) -> None:
    import ray

    import mnist_codec

    if where.address is None:
        # Ray swaps 127.0.0.1 for the machine's address unless told not to: a local search stays on loopback
        os.environ.setdefault(LOOPBACK_ENV, "0")
        ray.init(
            address="local",
            num_cpus=int(cpus) if cpus else None,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    else:
        try:
            ray.init(
                address=where.address,
                logging_level=logging.WARNING,
                log_to_driver=False,
                runtime_env={"py_modules": [str(Path(mnist_codec.__file__).parent)]},
            )
        except Exception as exc:
            raise TuneError(
                f"tune: the Ray cluster at {where.address} did not take the connection: {str(exc).splitlines()[0]}"
            ) from None


def _trainable(ctx: Context) -> Callable[[dict], None]:
    """The function Ray Tune runs per trial: :func:`.trial.run` with Ray's report and node."""

    def trainable(config: dict) -> None:
        import ray
        from ray import tune

        from . import trial

        node = ray.get_runtime_context().get_node_id()
        context = Context(
            **{**ctx.__dict__, "node": node, "host": socket.gethostname(), "node_ip": ray.util.get_node_ip_address()}
        )
        trial_id = tune.get_context().get_trial_id()

        def report(metrics: dict) -> None:
            tune.report({**metrics, "node_id": node})

        trial.run(config, context, report, trial_id)

    return trainable


def this_run_budget(spec: Spec, done: int, spent: float, trials: int | None, time_s: float | None) -> tuple[int, float]:
    """(trials, seconds) this search may take. By default what the study has left of the file's
    budget (``budget.trials`` trials, ``budget.time_s`` seconds of search, over every run that
    resumed it): a spent study goes straight to the proof. ``--trials`` and ``--time-s`` set
    this run's own budget; ``--trials`` alone takes at most ``budget.time_s``."""
    if time_s is None:
        if trials is None:
            return spec.trials - done, spec.time_s - spent
        return trials, spec.time_s
    return (trials if trials is not None else spec.trials - done), time_s


def run(
    root: Path,
    spec: Spec,
    base: dict,
    storage: str | None = None,
    where: Where = Where(),
    trials: int | None = None,
    time_s: float | None = None,
) -> dict:
    """Run the search; return this run's record (also appended to the study's ``search_runs``)."""
    if where.address is None:  # read when ray is imported: a local Ray keeps every node on 127.0.0.1
        os.environ.setdefault(LOOPBACK_ENV, "0")
        from ..codecs import device as devices

        # bf16 on a machine without it is refused once, here, not by every trial
        devices.check_precision(devices.resolve_device(str(base.get("device", "auto"))), spec.precision)
    import optuna
    from mlflow import MlflowClient
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from ..codecs.device import machine_name
    from ..tracking import store
    from .space import encode, suggest

    storage = storage or default_storage(root)
    study = open_study(storage, spec.study)
    before = len(finished(study))
    spent = sum(r.get("wall_seconds", 0) for r in study.user_attrs.get(RUNS_ATTR, []))
    budget_trials, budget_time = this_run_budget(spec, before, spent, trials, time_s)
    if budget_trials <= 0 or budget_time <= 0:  # nothing to search: the study and the store stay as they are
        log.info(
            "tune: study %r has spent its budget (%d of %d trials, %.0f of %.0f s of search); "
            "--trials N and --time-s S search more",
            spec.study,
            before,
            spec.trials,
            spent,
            spec.time_s,
        )
        return {"trials_this_run": 0, "skipped": True}
    uri = store.tracking_uri(root)
    client = MlflowClient(uri)
    with store.store_lock(uri, root):
        experiment_id = store.experiment_id(client, root)
    parent = tuning_run(client, experiment_id, study, spec, storage)
    client.update_run(parent, status="RUNNING")
    ctx = Context(spec, base, uri, experiment_id, parent)
    points = [encode(p) for p in spec.start_from] if not study.trials else None
    sampler = optuna.samplers.TPESampler(seed=spec.seed + len(study.trials))
    searcher = OptunaSearch(
        space=suggest(spec),
        metric=VAL_METRIC,
        mode="min",
        points_to_evaluate=points,
        sampler=sampler,
        study_name=spec.study,
        storage=optuna.storages.RDBStorage(storage),
    )
    stopped: dict[str, int] = {}  # Ray trial -> the epoch ASHA stopped it at
    run_of: dict[str, str] = {}  # Ray trial -> its MLflow run
    scheduler = _asha_recorder(spec, searcher, stopped)
    ends = _mlflow_callback(client, searcher, stopped, run_of, spec.max_epochs)
    start_ray(where, None)
    started = time.time()
    try:
        tuner = tune.Tuner(
            tune.with_resources(_trainable(ctx), {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=budget_trials,
                time_budget_s=budget_time,
                metric=VAL_METRIC,
                mode="min",
                max_concurrent_trials=None,
            ),
            run_config=tune.RunConfig(
                name=f"{spec.study}-{int(started)}",
                storage_path=str((root / DEFAULT_STORAGE_DIR / "ray").resolve()),
                callbacks=[ends],
                verbose=1,
                log_to_file=True,
            ),
        )
        grid = tuner.fit()
    except BaseException:  # Ctrl-C or an error of the search itself: its tuning run says so
        client.set_terminated(parent, "KILLED")
        raise
    finally:
        import ray

        ray.shutdown()
    wall = time.time() - started
    # trials the time budget cut: their runs are still open
    for _trial_id, run_id in run_of.items():
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, "mnist_codec.tune_end", CUT)
                client.set_terminated(run_id, "KILLED")
        except Exception as exc:
            log.warning("tune: could not end MLflow run %s: %s", run_id, exc)
    study = open_study(storage, spec.study)
    run_ids = set(run_of.values())
    ran = [t for t in study.trials if t.user_attrs.get("mlflow_run_id") in run_ids]
    errors = grid.num_errors
    record = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "where": where.name,
        "device": machine_name(),
        "precision": spec.precision,
        "cpus_per_trial": spec.cpus_per_trial,
        "gpus_per_trial": spec.gpus_per_trial,
        "time_budget_s": budget_time,
        "wall_seconds": round(wall, 1),
        "trials_before": before,
        "trials_this_run": len(ran),
        "completed": sum(1 for t in ran if ended(t) == "finished"),
        "asha_stopped": sum(1 for t in ran if ended(t).startswith("asha")),
        "cut_by_time": sum(1 for t in ran if ended(t) == CUT),
        "failed": errors,
    }
    study.set_user_attr(RUNS_ATTR, [*study.user_attrs.get(RUNS_ATTR, []), record])
    best = winner(study, spec.max_epochs)
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    done = finished(study)
    summary: dict[str, float] = {
        "trials": len(done),
        "asha_stopped": sum(1 for t in done if ended(t).startswith("asha")),
    }
    if best is not None and best.value is not None:
        summary["best_val_mse"] = best.value
    step = len(study.user_attrs[RUNS_ATTR])  # one point per search run
    client.log_batch(parent, metrics=[Metric(k, float(v), now, step) for k, v in summary.items()])
    client.set_terminated(parent, "FINISHED")
    log.info(
        "tune: %d trials this run (%d ran every epoch, %d stopped by ASHA, %d cut by the time budget, "
        "%d failed) in %.0f s; the study has %d",
        record["trials_this_run"],
        record["completed"],
        record["asha_stopped"],
        record["cut_by_time"],
        errors,
        wall,
        len(finished(study)),
    )
    return record
