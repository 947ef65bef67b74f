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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StringConstraints, model_validator

from .. import config, keys
from ..errors import ParamsError
from ..params import SCHEMA, Params, Precision, StrictInt, validate

FILE = "tune.yaml"
# set by the search for every trial, never searched nor fixed by the file
CONTROLLED = ("data.protocol", "n_seeds", "train.epochs", "train.precision", "seed", "device")


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


def overlay(base: dict, values: dict) -> dict:
    """A copy of the params mapping ``base`` with ``values`` (dotted keys) set in it."""
    raw = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    for key, value in values.items():
        keys.put(raw, key, value)
    return raw


def params_for(base: dict, spec: Spec, config: dict, source: str = "params") -> Params:
    """The params a trial trains with: params.yaml (``base``), the file's fixed keys, the
    search's own (:meth:`Spec.controlled`) and the trial's ``config`` (dotted keys); an error
    names ``source``."""
    return validate(overlay(base, {**spec.fixed, **spec.controlled(), **config}), source=source)


# --- the file's schema ---------------------------------------------------------------------------

StrictFloat = Annotated[float, Strict()]  # an int is a number too; text and booleans are not


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Section):
    trials: Annotated[StrictInt, Field(ge=1, le=100_000)]
    time_s: Annotated[StrictFloat, Field(gt=0, description="seconds of search, the study's over every run")]
    cpus_per_trial: Annotated[StrictFloat, Field(gt=0)] = 1.0
    gpus_per_trial: Annotated[StrictFloat, Field(ge=0)] = 0.0


class Asha(_Section):
    max_epochs: Annotated[StrictInt, Field(ge=1, le=10_000)]
    grace_epochs: Annotated[StrictInt, Field(ge=1)] = 1
    reduction_factor: Annotated[StrictFloat, Field(gt=1, le=100)] = 3.0

    @model_validator(mode="after")
    def _grace_within_max(self) -> Asha:
        if self.grace_epochs > self.max_epochs:
            raise ValueError(f"grace_epochs = {self.grace_epochs} is more than max_epochs = {self.max_epochs}")
        return self


IntRange = Annotated[list[StrictInt], Field(min_length=2, max_length=2)]
FloatRange = Annotated[list[StrictFloat], Field(min_length=2, max_length=2)]


class EntryFile(_Section):
    """One key of ``space``: exactly one of a choice, an int range or a float range."""

    choice: (
        Annotated[list[Any], Field(min_length=1, json_schema_extra={"accepts": "a non-empty list of values"})] | None
    ) = None
    int_: IntRange | None = Field(None, alias="int", json_schema_extra={"accepts": "[low, high], integers"})
    float_: FloatRange | None = Field(None, alias="float", json_schema_extra={"accepts": "[low, high], numbers"})
    log: StrictBool = False
    when: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_kind(self) -> EntryFile:
        kinds = [k for k, v in (("choice", self.choice), ("int", self.int_), ("float", self.float_)) if v is not None]
        if len(kinds) != 1:
            raise ValueError("needs exactly one of choice (a list of values), int [low, high] or float [low, high]")
        if self.choice is not None and "log" in self.model_fields_set:
            raise ValueError("log: only an int or float range has a log scale")
        bounds = self.int_ or self.float_
        if bounds is not None:
            if not bounds[0] < bounds[1]:
                raise ValueError(f"{kinds[0]} = {bounds!r}: low must be below high")
            if self.log and bounds[0] <= 0:
                raise ValueError(f"{kinds[0]} = {bounds!r}: a log scale needs low above 0")
        return self

    @property
    def kind(self) -> str:
        return "choice" if self.choice is not None else ("int" if self.int_ is not None else "float")

    @property
    def values(self) -> list:
        return list(self.choice or self.int_ or self.float_ or [])


class TuneFile(_Section):
    study: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
        Field(json_schema_extra={"accepts": "a name of 1 to 100 characters"}),
    ]
    seed: Annotated[StrictInt, Field(ge=0, le=2**32 - 1)] = 0
    precision: Precision = "fp32"
    budget: Budget
    asha: Asha
    fixed: dict[str, Any] | None = None
    space: Annotated[
        dict[str, EntryFile],
        Field(min_length=1, json_schema_extra={"accepts": "a mapping of params.yaml keys to their ranges"}),
    ]
    start_from: list[dict[str, Any]] | None = None


# --- reading and checking the file ----------------------------------------------------------------


def _refuse(doc: config.Document, loc: tuple, what: str) -> ParamsError:
    return ParamsError(f"{doc.where(loc)}: '{keys.dotted(loc)}' {what}")


def _check_value(base: dict, doc: config.Document, loc: tuple, key: str, value: Any) -> None:
    """A value the params validation accepts for ``key``, in one line naming the file's key."""
    validate(overlay(base, {key: value}), source=f"{doc.where(loc)}: '{keys.dotted(loc)}'")


def _params_key(doc: config.Document, loc: tuple, key: str, what: str) -> None:
    if key not in SCHEMA:
        raise _refuse(doc, loc, f"is not a params.yaml key; known keys are {', '.join(SCHEMA)}")
    if key in CONTROLLED:
        raise _refuse(
            doc,
            loc,
            "is set by the search itself (validation protocol, one seed, ASHA's max_epochs, the search's precision, "
            f"the pipeline's seed and device), not {what}",
        )


def _entry(doc: config.Document, key: str, raw: EntryFile, earlier: dict[str, Entry], base: dict) -> Entry:
    loc = ("space", key)
    _params_key(doc, loc, key, "searched")
    for v in raw.values:
        _check_value(base, doc, (*loc, raw.kind), key, v)
    for k, v in raw.when.items():
        if k not in earlier or earlier[k].kind != "choice":
            raise _refuse(doc, (*loc, "when", k), "is not an earlier choice in space")
        if not earlier[k].contains(v):
            raise _refuse(doc, (*loc, "when", k), f"= {v!r} is not one of its choices {list(earlier[k].values)}")
    values = raw.values if raw.kind != "int" else [int(v) for v in raw.values]
    return Entry(key, raw.kind, tuple(values), raw.log, dict(raw.when))


def _point(doc: config.Document, i: int, raw: dict, space: tuple[Entry, ...]) -> dict:
    loc = ("start_from", i)
    entries = {e.key: e for e in space}
    for k in raw:
        if k not in entries:
            raise _refuse(doc, (*loc, k), "is not a key of space")
    point: dict = {}
    for e in space:
        if not e.active(point):
            if e.key in raw:
                raise _refuse(doc, (*loc, e.key), f"is not searched under {e.when}")
            continue
        if e.key not in raw:
            raise _refuse(doc, loc, f"does not set {e.key}")
        if not e.contains(raw[e.key]):
            raise _refuse(doc, (*loc, e.key), f"= {raw[e.key]!r} is outside its space")
        point[e.key] = raw[e.key]
    return point


def load(path: str | Path, base: dict) -> Spec:
    """Read and check the search file ``path`` against ``base`` (params.yaml as read); a bad
    file raises ParamsError in one line naming the file, the line and the key."""
    return check(config.read_yaml(path, what="the search space of `make tune`"), base)


def check(doc: config.Document | dict, base: dict) -> Spec:
    """A :class:`Spec` from a tune.yaml document (or its plain data), its values checked
    against ``base`` (params.yaml as read)."""
    if not isinstance(doc, config.Document):
        doc = config.Document(FILE, doc)
    top = config.check(TuneFile, doc, empty_ok=False)
    fixed = dict(top.fixed or {})
    for key, value in fixed.items():
        _params_key(doc, ("fixed", key), key, "fixed in the file")
        _check_value(base, doc, ("fixed", key), key, value)
    fixed_base = overlay(base, fixed)
    entries: dict[str, Entry] = {}
    for key, raw in top.space.items():
        if key in fixed:
            raise _refuse(doc, ("space", key), "is fixed too; a key is searched or fixed, not both")
        entries[key] = _entry(doc, key, raw, entries, fixed_base)
    space = tuple(entries.values())
    points = tuple(_point(doc, i, p, space) for i, p in enumerate(top.start_from or []))
    b, a = top.budget, top.asha
    spec = Spec(
        top.study,
        top.seed,
        top.precision,
        b.trials,
        float(b.time_s),
        float(b.cpus_per_trial),
        float(b.gpus_per_trial),
        a.max_epochs,
        a.grace_epochs,
        float(a.reduction_factor),
        fixed,
        space,
        points,
        Path(doc.source).name,
    )
    for i, p in enumerate(points):  # a whole point is a valid params file too
        params_for(base, spec, p, source=f"{doc.where(('start_from', i))}: 'start_from[{i}]'")
    return spec
