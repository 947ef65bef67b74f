"""The space of ``tune.yaml`` as Optuna asks it: a define-by-run function that proposes a value
for every key active under the earlier choices, and the values' round trip (Optuna's choices are
plain scalars, so a list travels as JSON text)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .space import Spec

if TYPE_CHECKING:
    import optuna


class suggest:
    """Optuna's define-by-run space: asks the trial for every key active under its earlier
    choices, in the file's order. List values go to Optuna as JSON text (its choices are
    plain scalars) and come back as lists in :func:`decode`. A class, not a closure, so that
    Ray Tune can pickle the searcher holding it into its experiment checkpoint."""

    def __init__(self, spec: Spec):
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> None:
        config: dict = {}
        for e in self.spec.space:
            if not e.active(config):
                continue
            if e.kind == "choice":
                picked = trial.suggest_categorical(e.key, [_encode(v) for v in e.values])
                config[e.key] = _decode_value(picked)
            elif e.kind == "int":
                config[e.key] = trial.suggest_int(e.key, e.values[0], e.values[1], log=e.log)
            else:
                config[e.key] = trial.suggest_float(e.key, e.values[0], e.values[1], log=e.log)
        return None


def _encode(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list) else value


def _decode_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value


def decode(config: dict) -> dict:
    """A trial's config as params values (Optuna's JSON text back to lists)."""
    return {k: _decode_value(v) for k, v in config.items()}


def encode(point: dict) -> dict:
    """A start_from point as Optuna takes it (lists as JSON text)."""
    return {k: _encode(v) for k, v in point.items()}
