"""The one place where params.yaml is read and validated.

Every key is checked before any work starts. Unknown keys and bad values raise
:class:`ParamsError` naming the key, the value found and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ParamsError

ACTIVATIONS = ("relu", "tanh", "leaky_relu", "gelu", "elu", "silu")
PROTOCOLS = ("holdout", "notebook")
DEVICES = ("auto", "cpu", "cuda")
N_PIXELS = 784


@dataclass(frozen=True)
class DataParams:
    source: str = "bundled"
    protocol: str = "holdout"
    train_limit: int | None = None
    eval_limit: int | None = None


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3


@dataclass(frozen=True)
class DeepParams:
    hidden: tuple[int, ...] = (256, 64)


@dataclass(frozen=True)
class EvaluateParams:
    n_examples: int = 8
    n_projection: int = 2000


@dataclass(frozen=True)
class Params:
    seed: int = 42
    device: str = "auto"
    latent_dim: int = 32
    activation: tuple[str, ...] = ("relu", "tanh", "leaky_relu")
    data: DataParams = DataParams()
    train: TrainParams = TrainParams()
    deep: DeepParams = DeepParams()
    evaluate: EvaluateParams = EvaluateParams()

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (lists, not tuples), as it would be written to params.yaml."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- value checks: each returns the normalised value or raises ParamsError ---------------

def _fail(key: str, value: Any, allowed: str) -> ParamsError:
    return ParamsError(f"params: '{key}' = {value!r} is not allowed; expected {allowed}")


def _int(lo: int | None = None, hi: int | None = None, optional: bool = False) -> Callable:
    if lo is not None and hi is not None:
        allowed = f"an integer from {lo} to {hi}"
    elif lo is not None:
        allowed = f"an integer >= {lo}"
    else:
        allowed = "an integer"
    if optional:
        allowed += " or null"

    def check(key: str, v: Any) -> int | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(key, v, allowed)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _fail(key, v, allowed)
        return v

    return check


def _positive_float(key: str, v: Any) -> float:
    allowed = "a positive number such as 0.001 (YAML reads 1e-3 as text; write 1.0e-3)"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(key, v, allowed)
    if not math.isfinite(v) or v <= 0:
        raise _fail(key, v, allowed)
    return float(v)


def _choice(options: tuple[str, ...]) -> Callable:
    def check(key: str, v: Any) -> str:
        if not isinstance(v, str) or v not in options:
            raise _fail(key, v, "one of " + ", ".join(options))
        return v

    return check


def _activation(key: str, v: Any) -> tuple[str, ...]:
    allowed = "one of " + ", ".join(ACTIVATIONS) + " (or a list of them)"
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list) or not names:
        raise _fail(key, v, allowed)
    for name in names:
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise _fail(key, name, allowed)
    if len(set(names)) != len(names):
        raise _fail(key, v, "a list without repeated names")
    return tuple(names)


def _source(key: str, v: Any) -> str:
    allowed = "'bundled' or a base URL starting with https://, http:// or file://"
    if not isinstance(v, str):
        raise _fail(key, v, allowed)
    if v != "bundled" and not v.startswith(("https://", "http://", "file://")):
        raise _fail(key, v, allowed)
    from urllib.parse import unquote, urlsplit

    if ".." in unquote(urlsplit(v).path).split("/"):
        raise _fail(key, v, "a URL without '..' path segments (give the mirror's full path)")
    return v


def _hidden(key: str, v: Any) -> tuple[int, ...]:
    allowed = "a non-empty list of integers from 1 to 4096, e.g. [256, 64]"
    if not isinstance(v, list) or not v:
        raise _fail(key, v, allowed)
    for h in v:
        if isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 4096:
            raise _fail(key, v, allowed)
    return tuple(v)


# dotted key -> check. The table is the schema: a key missing here is unknown.
SCHEMA: dict[str, Callable[[str, Any], Any]] = {
    "seed": _int(0, 2**32 - 1),
    "device": _choice(DEVICES),
    "latent_dim": _int(1, N_PIXELS - 1),
    "activation": _activation,
    "data.source": _source,
    "data.protocol": _choice(PROTOCOLS),
    "data.train_limit": _int(1, optional=True),
    "data.eval_limit": _int(1, optional=True),
    "train.epochs": _int(1, 10_000),
    "train.batch_size": _int(1, 1_000_000),
    "train.lr": _positive_float,
    "deep.hidden": _hidden,
    "evaluate.n_examples": _int(1, 64),
    "evaluate.n_projection": _int(10, 100_000),
}
SECTIONS = {"data": DataParams, "train": TrainParams, "deep": DeepParams, "evaluate": EvaluateParams}


def validate(raw: Any) -> Params:
    """Check a params mapping (as read from YAML) and return typed :class:`Params`.

    Missing keys take their defaults; unknown keys and bad values raise ParamsError.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"params: expected a mapping of keys at the top level, found {type(raw).__name__}")
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise _fail(key, value, "a mapping of " + ", ".join(_keys_of(key)))
            for sub, subvalue in value.items():
                dotted = f"{key}.{sub}"
                if dotted not in SCHEMA:
                    raise _unknown(dotted)
                sections[key][sub] = SCHEMA[dotted](dotted, subvalue)
        elif key in SCHEMA:
            top[key] = SCHEMA[key](key, value)
        else:
            raise _unknown(str(key))
    return Params(**top, **{name: cls(**sections[name]) for name, cls in SECTIONS.items()})


def _keys_of(section: str) -> list[str]:
    return [k.split(".", 1)[1] for k in SCHEMA if k.startswith(section + ".")]


def _unknown(key: str) -> ParamsError:
    known = ", ".join(SCHEMA)
    return ParamsError(f"params: unknown key '{key}'; known keys are {known}")


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ParamsError(f"params: file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"params: {path} is not valid YAML: {exc}") from None
    return validate(raw)
