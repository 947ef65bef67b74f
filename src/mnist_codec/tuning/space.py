"""``tune.yaml``: what ``make tune`` searches, for how long, and how ASHA cuts trials short.

The file names params.yaml keys (``deep.arch``, ``train.lr`` …) and, for each, a choice of
values, an integer range or a float range (optionally on a log scale), with an optional
``when`` that makes the key exist only for some values of an earlier choice (the widths of an
MLP only when ``deep.arch`` is ``mlp``). Every value the space can take is checked by the
params validation itself (:func:`mnist_codec.params.validate`) when the file is read, so a
trial never starts with a value a stage would refuse. A bad file is refused in one line that
names the key.

What a trial must not choose is set here, not in the file: the validation protocol (the test
images are never seen during the search), one seed, ``train.epochs`` = ASHA's ``max_epochs``
and the search's precision.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ParamsError
from ..params import SCHEMA, Params, validate

if TYPE_CHECKING:
    import optuna


FILE = "tune.yaml"
TOP_KEYS = ("study", "seed", "precision", "budget", "asha", "fixed", "space", "start_from")
BUDGET_KEYS = ("trials", "time_s", "cpus_per_trial", "gpus_per_trial")
ASHA_KEYS = ("max_epochs", "grace_epochs", "reduction_factor")
ENTRY_KEYS = ("choice", "int", "float", "log", "when")
# set by the search for every trial, never searched nor fixed by the file
CONTROLLED = ("data.protocol", "n_seeds", "train.epochs", "train.precision", "seed", "device")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Entry:
    """One searched key: ``kind`` choice | int | float, its ``values`` (a choice's list or a
    range's [low, high]), ``log`` for ranges, ``when`` {earlier choice key: value}."""

    key: str
    kind: str
    values: tuple
    log: bool = False
    when: dict = field(default_factory=dict)

    def active(self, config: dict) -> bool:
        return all(config.get(k) == v for k, v in self.when.items())

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return any(_same(value, v) for v in self.values)
        number = type(value) is int or (self.kind == "float" and type(value) is float)
        return number and self.values[0] <= value <= self.values[1]


@dataclass(frozen=True)
class Spec:
    """A checked tune.yaml."""

    study: str
    seed: int
    precision: str
    trials: int
    time_s: float
    cpus_per_trial: float
    gpus_per_trial: float
    max_epochs: int
    grace_epochs: int
    reduction_factor: float
    fixed: dict  # dotted key -> value, on top of params.yaml
    space: tuple[Entry, ...]
    start_from: tuple[dict, ...]
    source: str = FILE

    def describe(self) -> dict:
        """The search as the record states it: space, fixed keys, budget and ASHA."""
        space = {}
        for e in self.space:
            d: dict[str, Any] = (
                {e.kind: list(e.values)} if e.kind == "choice" else {e.kind: list(e.values), "log": e.log}
            )
            if e.when:
                d["when"] = dict(e.when)
            space[e.key] = d
        return {
            "space": space,
            "fixed": {**self.fixed, **self.controlled()},
            "budget": {
                "trials": self.trials,
                "time_s": self.time_s,
                "cpus_per_trial": self.cpus_per_trial,
                "gpus_per_trial": self.gpus_per_trial,
            },
            "asha": {
                "max_epochs": self.max_epochs,
                "grace_epochs": self.grace_epochs,
                "reduction_factor": self.reduction_factor,
            },
        }

    def controlled(self) -> dict:
        return {
            "data.protocol": "validation",
            "n_seeds": 1,
            "train.epochs": self.max_epochs,
            "train.precision": self.precision,
        }


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML values: 1 and 1.0 differ from True; lists compare element-wise."""
    return (type(a) is type(b) and a == b) or (type(a) in (int, float) and type(b) in (int, float) and a == b)


def set_key(raw: dict, key: str, value: Any) -> None:
    """Set a dotted params key in a nested params mapping."""
    section, _, sub = key.partition(".")
    if sub:
        raw.setdefault(section, {})[sub] = value
    else:
        raw[key] = value


def params_for(base: dict, spec: Spec, config: dict) -> Params:
    """The params a trial trains with: params.yaml (``base``), the file's fixed keys, the
    search's own (:meth:`Spec.controlled`) and the trial's ``config`` (dotted keys)."""
    raw = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    for key, value in {**spec.fixed, **spec.controlled(), **config}.items():
        set_key(raw, key, value)
    return validate(raw)


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


# --- reading and checking the file ----------------------------------------------------------------


def _err(where: str, what: str) -> ParamsError:
    return ParamsError(f"{where}: {what}")


def _mapping(value: Any, where: str, known: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise _err(where, f"expected a mapping of {', '.join(known)}, found {value!r}")
    for k in value:
        if k not in known:
            raise _err(f"{where}.{k}", f"unknown key; known keys are {', '.join(known)}")
    return value


def _number(value: Any, where: str, kind: type, low: float, high: float = math.inf, low_open: bool = False) -> Any:
    ok = type(value) is kind or (kind is float and type(value) is int)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'above' if low_open else 'from'} {low}" + (f" to {high}" if high != math.inf else "")
        raise _err(where, f"= {value!r} is not allowed; expected {'an integer' if kind is int else 'a number'} {bound}")
    return kind(value)


def _check_value(base: dict, where: str, key: str, value: Any) -> None:
    """A value the params validation accepts for ``key``, in one line naming the file's key."""
    raw = json.loads(json.dumps(base))
    set_key(raw, key, value)
    try:
        validate(raw)
    except ParamsError as exc:
        raise _err(where, str(exc).removeprefix("params: ")) from None


def _entry(key: str, raw: Any, earlier: dict[str, Entry], base: dict, source: str) -> Entry:
    where = f"{source}: space.{key}"
    if key not in SCHEMA:
        raise _err(where, f"not a params.yaml key; known keys are {', '.join(SCHEMA)}")
    if key in CONTROLLED:
        raise _err(
            where,
            "is set by the search itself (validation protocol, one seed, ASHA's max_epochs, "
            "the search's precision, the pipeline's seed and device), not searched",
        )
    entry = _mapping(raw, where, ENTRY_KEYS)
    kinds = [k for k in ("choice", "int", "float") if k in entry]
    if len(kinds) != 1:
        raise _err(where, "needs exactly one of choice (a list of values), int [low, high] or float [low, high]")
    kind = kinds[0]
    values = entry[kind]
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise _err(f"{where}.choice", f"= {values!r} is not allowed; expected a non-empty list of values")
        if "log" in entry:
            raise _err(f"{where}.log", "only an int or float range has a log scale")
        for v in values:
            _check_value(base, f"{where}.choice", key, v)
    else:
        cast = int if kind == "int" else float
        if not isinstance(values, list) or len(values) != 2:
            raise _err(f"{where}.{kind}", f"= {values!r} is not allowed; expected [low, high]")
        low, high = (_number(v, f"{where}.{kind}", cast, -math.inf) for v in values)
        if not low < high:
            raise _err(f"{where}.{kind}", f"= {values!r} is not allowed; low must be below high")
        log = entry.get("log", False)
        if type(log) is not bool:
            raise _err(f"{where}.log", f"= {log!r} is not allowed; expected true or false")
        if log and low <= 0:
            raise _err(f"{where}.{kind}", f"= {values!r} is not allowed; a log scale needs low above 0")
        for v in (low, high):
            _check_value(base, f"{where}.{kind}", key, v)
        values = [low, high]
    when = entry.get("when", {})
    if not isinstance(when, dict):
        raise _err(f"{where}.when", f"= {when!r} is not allowed; expected a mapping of an earlier choice to its value")
    for k, v in when.items():
        if k not in earlier or earlier[k].kind != "choice":
            raise _err(f"{where}.when.{k}", "is not an earlier choice in space")
        if not earlier[k].contains(v):
            raise _err(f"{where}.when.{k}", f"= {v!r} is not one of its choices {list(earlier[k].values)}")
    return Entry(key, kind, tuple(values), bool(entry.get("log", False)), dict(when))


def _point(raw: Any, where: str, space: tuple[Entry, ...]) -> dict:
    if not isinstance(raw, dict):
        raise _err(where, f"expected a mapping of searched keys to values, found {raw!r}")
    entries = {e.key: e for e in space}
    for k in raw:
        if k not in entries:
            raise _err(f"{where}.{k}", "is not a key of space")
    config: dict = {}
    for e in space:
        if not e.active(config):
            if e.key in raw:
                raise _err(f"{where}.{e.key}", f"is not searched under {e.when}")
            continue
        if e.key not in raw:
            raise _err(where, f"does not set {e.key}")
        if not e.contains(raw[e.key]):
            raise _err(f"{where}.{e.key}", f"= {raw[e.key]!r} is outside its space")
        config[e.key] = raw[e.key]
    return config


def load(path: str | Path = FILE, params_path: str | Path = "params.yaml") -> Spec:
    """Read and check ``path`` against the params in ``params_path``; a bad file raises
    ParamsError in one line naming the key."""
    path = Path(path)
    source = path.name
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (the search space of `make tune`)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    try:
        base = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"params: file not found: {params_path}") from None
    return check(raw, base, source)


def check(raw: Any, base: dict, source: str = FILE) -> Spec:
    """A :class:`Spec` from a tune.yaml mapping ``raw``, its values checked against ``base``
    (params.yaml as read)."""
    top = _mapping(raw, source, TOP_KEYS)
    for k in ("study", "budget", "asha", "space"):
        if k not in top:
            raise _err(f"{source}: {k}", "is missing")
    study = top["study"]
    if not isinstance(study, str) or not study.strip() or len(study) > 100:
        raise _err(f"{source}: study", f"= {study!r} is not allowed; expected a name of 1 to 100 characters")
    seed = _number(top.get("seed", 0), f"{source}: seed", int, 0, 2**32 - 1)
    precision = top.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise _err(f"{source}: precision", f"= {precision!r} is not allowed; expected one of {', '.join(PRECISIONS)}")
    budget = _mapping(top["budget"], f"{source}: budget", BUDGET_KEYS)
    if "trials" not in budget or "time_s" not in budget:
        raise _err(f"{source}: budget", "needs trials and time_s (seconds of search), the study's over every run")
    trials = _number(budget["trials"], f"{source}: budget.trials", int, 1, 100_000)
    time_s = _number(budget["time_s"], f"{source}: budget.time_s", float, 0, low_open=True)
    cpus = _number(budget.get("cpus_per_trial", 1), f"{source}: budget.cpus_per_trial", float, 0, low_open=True)
    gpus = _number(budget.get("gpus_per_trial", 0), f"{source}: budget.gpus_per_trial", float, 0)
    asha = _mapping(top["asha"], f"{source}: asha", ASHA_KEYS)
    if "max_epochs" not in asha:
        raise _err(f"{source}: asha.max_epochs", "is missing")
    max_epochs = _number(asha["max_epochs"], f"{source}: asha.max_epochs", int, 1, 10_000)
    grace = _number(asha.get("grace_epochs", 1), f"{source}: asha.grace_epochs", int, 1, max_epochs)
    factor = _number(asha.get("reduction_factor", 3), f"{source}: asha.reduction_factor", float, 1, 100, low_open=True)
    fixed = top.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise _err(f"{source}: fixed", f"expected a mapping of params.yaml keys to values, found {fixed!r}")
    for key, value in fixed.items():
        where = f"{source}: fixed.{key}"
        if key not in SCHEMA:
            raise _err(where, f"not a params.yaml key; known keys are {', '.join(SCHEMA)}")
        if key in CONTROLLED:
            raise _err(where, "is set by the search itself, not fixed in the file")
        _check_value(base, where, key, value)
    space_raw = top["space"]
    if not isinstance(space_raw, dict) or not space_raw:
        raise _err(f"{source}: space", "expected a mapping of params.yaml keys to their ranges")
    entries: dict[str, Entry] = {}
    fixed_base = json.loads(json.dumps(base))
    for key, value in fixed.items():
        set_key(fixed_base, key, value)
    for key, value in space_raw.items():
        if key in fixed:
            raise _err(f"{source}: space.{key}", "is fixed too; a key is searched or fixed, not both")
        entries[key] = _entry(key, value, entries, fixed_base, source)
    space = tuple(entries.values())
    starts = top.get("start_from") or []
    if not isinstance(starts, list):
        raise _err(f"{source}: start_from", "expected a list of points of the space")
    points = tuple(_point(p, f"{source}: start_from[{i}]", space) for i, p in enumerate(starts))
    spec = Spec(
        study.strip(),
        seed,
        precision,
        trials,
        time_s,
        cpus,
        gpus,
        max_epochs,
        grace,
        factor,
        dict(fixed),
        space,
        points,
        source,
    )
    for i, p in enumerate(points):  # a whole point is a valid params file too
        try:
            params_for(base, spec, p)
        except ParamsError as exc:
            raise _err(f"{source}: start_from[{i}]", str(exc).removeprefix("params: ")) from None
    return spec
