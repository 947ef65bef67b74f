"""The Optuna study behind ``mnist-codec tune``: where it is stored, its finished trials, how
each ended and how many epochs it ran, the winner, and its one tuning run in MLflow.

The study keeps what a later search or the proof (:mod:`.proof`) reads: each trial's MLflow run,
Ray trial and end as user attributes (:mod:`.records` writes them), and one record per search
run (``search_runs``: wall time, where, device, precision).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MnistCodecError
from ..tracking.server import redact
from .space import Spec

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import FrozenTrial

DEFAULT_STORAGE_DIR = ".tune"
TUNING_RUN_ATTR = "mlflow_tuning_run"  # the study's user attribute: {tracking URI: run id}
RUNS_ATTR = "search_runs"  # the study's user attribute: one record per `mnist-codec tune` search
CUT = "cut by the time budget"


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
            f"tune: cannot open the Optuna study {name!r} at {redact(storage)}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


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
        "mnist_codec.tune_storage": redact(storage),
    }
    run_id = client.create_run(experiment_id, run_name=f"tune {spec.study}", tags=tags).info.run_id
    runs[client.tracking_uri] = run_id
    study.set_user_attr(TUNING_RUN_ATTR, runs)
    return run_id


def ended(ot_trial: FrozenTrial) -> str:
    """How a finished Optuna trial of a search ended: ``finished``, ``asha stopped at epoch N``,
    or cut by the time budget (a trial whose end nothing recorded)."""
    return str(ot_trial.user_attrs.get("ended") or CUT)
