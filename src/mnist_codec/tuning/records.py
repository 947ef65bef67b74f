"""What a search records as its trials run: on each Optuna trial, its MLflow run, Ray trial,
node, epochs and how it ended (a scheduler that wraps ASHA records which trials it stopped and
at which epoch); on each trial's MLflow run, its end (KILLED with the epoch ASHA stopped it at,
KILLED when the time budget cut it, FAILED on an error)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .space import Spec
from .study import CUT, RUNS_ATTR, ended, finished, winner

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient
    from ray.tune import Callback
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)


def mark(searcher: OptunaSearch, trial_id: str, **attrs: object) -> None:
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


def asha_recorder(spec: Spec, searcher: OptunaSearch, stopped: dict[str, int]) -> ASHAScheduler:
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
            mark(searcher, trial.trial_id, epochs=epoch)
            if epoch >= spec.max_epochs:
                mark(searcher, trial.trial_id, ended="finished")
            elif action == TrialScheduler.STOP:
                stopped[trial.trial_id] = epoch
                mark(searcher, trial.trial_id, ended=f"asha stopped at epoch {epoch}")
            return action

    return RecordingASHA()


def mlflow_callback(
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
                mark(
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


def end_cut_runs(client: MlflowClient, run_of: dict[str, str]) -> None:
    """End KILLED the MLflow runs of trials the time budget cut: the search left them open."""
    for run_id in run_of.values():
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, "mnist_codec.tune_end", CUT)
                client.set_terminated(run_id, "KILLED")
        except Exception as exc:
            log.warning("tune: could not end MLflow run %s: %s", run_id, exc)


def search_record(
    study: optuna.Study, run_ids: set[str], spec: Spec, budget_time: float, wall: float, before: int, errors: int
) -> dict:
    """What one search run did, for the study's ``search_runs``: the machine, the budget and wall
    time, its trials and how they ended."""
    from ..codecs.device import machine_name

    ran = [t for t in study.trials if t.user_attrs.get("mlflow_run_id") in run_ids]
    return {
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


def log_study(client: MlflowClient, parent: str, study: optuna.Study, max_epochs: int) -> None:
    """The study so far on its tuning run: trials, how many ASHA stopped, the best validation
    MSE; one point per search run."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    done = finished(study)
    summary: dict[str, float] = {
        "trials": len(done),
        "asha_stopped": sum(1 for t in done if ended(t).startswith("asha")),
    }
    best = winner(study, max_epochs)
    if best is not None and best.value is not None:
        summary["best_val_mse"] = best.value
    step = len(study.user_attrs[RUNS_ATTR])
    client.log_batch(parent, metrics=[Metric(k, float(v), now, step) for k, v in summary.items()])
