"""The winner proven: the study's best settings as a DVC experiment on the test images.

The search chose on the validation split; here its settings run once under the holdout
protocol on the default seeds (params.yaml's ``n_seeds``), as an ordinary experiment of the
pipeline: ``dvc exp run --temp -n tuned -S <the winner's keys>``. Its models are MLflow runs
and registered versions like any run's. ``reports/frontier.json`` then records the tuned codec
(test MSE, 95% interval, per seed), the search that found it (space, budget, ASHA, trials, how
many ASHA stopped, every search run's wall time, machine and precision), the record it replaces
and whether the new interval lies wholly below the old one.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..errors import MnistCodecError
from .proposals import decode
from .space import Spec

if TYPE_CHECKING:
    import optuna

    from ..experiments.frontier import Result


log = logging.getLogger(__name__)

NAME = "tuned"
COMMAND = "make tune"
TARGET_MSE = 0.0028  # per pixel on the 10,000 test images (2.2 summed over an image's 784 pixels)


class ProofError(MnistCodecError):
    """The study has no winner to prove, or its experiment failed."""


def yaml_text(value: object) -> str:
    """A value as ``dvc exp run -S`` reads it back (YAML): floats keep a dot and a signed
    exponent (YAML reads ``1e-05`` as text), lists stay flow lists."""
    if isinstance(value, bool) or value is None:
        return yaml.safe_dump(value, default_flow_style=True).split("\n")[0]
    if isinstance(value, float):
        text = repr(value)
        if "e" in text:
            mantissa, exp = text.split("e")
            text = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exp if exp[0] in '+-' else '+' + exp}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ",".join(yaml_text(v) for v in value) + "]"
    else:
        text = str(value)
    if yaml.safe_load(text) != value and not isinstance(value, (list, tuple)):
        raise ValueError(f"{value!r} does not read back from YAML as itself")
    return text


def overrides(spec: Spec, searched: dict, precision: str | None = None) -> tuple[str, ...]:
    """The ``-S`` overrides of the test run: the file's fixed keys, the search's epochs and
    precision, the winner's searched keys; protocol and seeds stay params.yaml's."""
    keys = {
        **spec.fixed,
        "train.epochs": spec.max_epochs,
        "train.precision": precision or spec.precision,
        **decode(searched),
    }
    return tuple(f"{k}={yaml_text(v)}" for k, v in keys.items())


def shown_storage(storage: str, root: Path | None = None) -> str:
    """The study's storage as a record shows it: no password, and the repository's own
    SQLite file relative to the repository (a path of one machine means nothing on another)."""
    from ..tracking.server import redact

    if root is not None:
        prefix = f"sqlite:///{Path(root).resolve()}/"
        if storage.startswith(prefix):
            return "sqlite:///" + storage[len(prefix) :] + " (in the repository)"
    return redact(storage)


def search_record(study: optuna.Study, spec: Spec, storage: str) -> dict:
    """What the study says of the search: its space, budget, ASHA, trials and every run
    (``storage`` as the record shows it: :func:`shown_storage`)."""
    from ..tracking.server import redact
    from .study import RUNS_ATTR, ended, epochs_run, finished, winner

    trials = finished(study)
    best = winner(study, spec.max_epochs)
    if best is None:
        raise ProofError(
            f"tune: study {spec.study!r} has no trial that ran all {spec.max_epochs} epochs yet; "
            "run the search (make tune) first"
        )
    runs = study.user_attrs.get(RUNS_ATTR, [])
    ends = [ended(t) for t in trials]
    return {
        "study": spec.study,
        "storage": redact(storage),
        "file": spec.source,
        "sampler": f"Optuna TPESampler (seed {spec.seed} + the trials already in the study), define-by-run space",
        "scheduler": (
            f"ASHA: epochs as budget, max {spec.max_epochs}, grace {spec.grace_epochs}, "
            f"reduction factor {spec.reduction_factor:g}"
        ),
        **spec.describe(),
        "trials": len(trials),
        "ran_every_epoch": sum(1 for t in trials if epochs_run(t) >= spec.max_epochs),
        "asha_stopped": sum(1 for e in ends if e.startswith("asha")),
        "cut_by_time": sum(1 for e in ends if e.startswith("cut")),
        "runs": runs,
        "wall_seconds": round(sum(r.get("wall_seconds", 0) for r in runs), 1),
        "winner": {
            "optuna_trial": best.number,
            "ray_trial": best.user_attrs.get("ray_trial_id"),
            "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
            "searched": decode(best.params),
            "validation_mse": best.value,
            "epochs": epochs_run(best),
        },
        "table": [
            {
                "optuna_trial": t.number,
                "searched": decode(t.params),
                "validation_mse": t.value,
                "epochs": epochs_run(t),
                "ended": ended(t),
            }
            for t in trials
        ],
    }


def replaced(previous: dict | None) -> dict | None:
    """The summary of the record the new one replaces."""
    if not previous:
        return None
    keys = ("command", "codec", "codec_name", "test_mse", "test_mse_ci95", "n_seeds", "experiment_command")
    return {k: previous[k] for k in keys if k in previous}


def record(
    spec: Spec,
    search: dict,
    final: Result,
    per_seed_mse: dict,
    command: list[str],
    previous: dict | None,
    seconds: dict,
    machine: str,
    precision: str,
) -> dict:
    """reports/frontier.json for the tuned codec."""
    from ..experiments.frontier import measured

    old = replaced(previous)
    return {
        "command": COMMAND,
        "experiment_command": shlex.join(command),
        **measured(final, per_seed_mse, TARGET_MSE),
        "interval_below_replaced": old is not None and per_seed_mse["ci95_high"] < old["test_mse_ci95"][0],
        "precision": {"search": spec.precision, "test run": precision},
        "selection": {
            "protocol": "validation",
            "rule": "the lowest validation MSE among the study's trials that ran every epoch (one seed each)",
            "search": search,
        },
        "replaces": old,
        "wall_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "device": machine,
    }


def run(
    root: Path, spec: Spec, storage: str, out: Path, extra: tuple[str, ...] = (), precision: str | None = None
) -> dict:
    """Run the study's winner on the test images and write ``out``; ``extra`` overrides are
    added to the test run (a small profile for tests)."""
    import json

    from .. import fileio
    from ..codecs.device import machine_name
    from ..experiments import frontier
    from ..experiments.exps import show as exp_show
    from .study import open_study

    study = open_study(storage, spec.study)
    search = search_record(study, spec, shown_storage(storage, root))
    precision = precision or spec.precision
    args = (*overrides(spec, search["winner"]["searched"], precision), *extra)
    log.info(
        "tune: proving optuna trial %d (validation MSE %.6f) on the test images",
        search["winner"]["optuna_trial"],
        search["winner"]["validation_mse"],
    )
    try:
        test_seconds = frontier.run_experiment(root, NAME, args)  # its wall seconds
    except MnistCodecError as exc:
        raise ProofError(f"tune: {exc}") from None
    final = frontier.find(exp_show(root), NAME)
    final = replace(final, mse=frontier.committed_metrics(root, final.rev)[final.codec]["mse"])
    previous = json.loads(out.read_text()) if out.is_file() else None
    if previous and previous.get("command") == COMMAND and previous.get("replaces"):
        previous = previous["replaces"]  # a re-run compares with what the first tuned record replaced
    seconds = {
        "search": search["wall_seconds"],
        "test run": test_seconds,
        "total": search["wall_seconds"] + test_seconds,
    }
    rec = record(
        spec,
        search,
        final,
        final.mse,
        frontier.exp_run_command(NAME, args),
        previous,
        seconds,
        machine_name(),
        precision,
    )
    fileio.write_json(out, rec)
    log.info(
        "tune: %s test MSE %.6f [%.6f, %.6f] over %d seeds (target %s: %s); %s",
        rec["codec_name"],
        rec["test_mse"],
        *rec["test_mse_ci95"],
        rec["n_seeds"],
        TARGET_MSE,
        "met" if rec["meets_target"] else "not met",
        out,
    )
    return rec
