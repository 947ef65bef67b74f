"""Dotted keys of nested YAML data: ``train.lr`` names ``{"train": {"lr": ...}}``, and
``rules[0].direction`` a key of a mapping in a list. The one place that reads, writes and names
them -- for params.yaml's keys (``-S train.lr=...``, a search's trials, the MLflow params of a
run), a training's settings the gate pairs on, and the keys a config error names.
"""

from __future__ import annotations

from typing import Any

Loc = tuple[str | int, ...]  # a location in YAML data: ('rules', 0, 'direction')


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1e-3}, 'seeds': [1, 2]} -> {'train.lr': 1e-3, 'seeds': [1, 2]}: each leaf
    by its dotted key (a list is a leaf; an empty mapping has none)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def get(data: dict[str, Any], key: str) -> Any:
    """The value of dotted ``key`` in ``data`` (KeyError where it is not set)."""
    for part in key.split("."):
        data = data[part]
    return data


def has(data: Any, key: str) -> bool:
    """Whether ``data`` sets dotted ``key``."""
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def put(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` to ``value`` in ``data``, making the mappings above it where missing."""
    *above, last = key.split(".")
    for part in above:
        data = data.setdefault(part, {})
    data[last] = value


def subset(data: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """Only ``keys`` of ``data`` (top-level or dotted), nested as in ``data``."""
    out: dict[str, Any] = {}
    for key in keys:
        put(out, key, get(data, key))
    return out


def dotted(loc: Loc) -> str:
    """('rules', 0, 'direction') -> 'rules[0].direction'; ('train', 'epochs') -> 'train.epochs'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def lookup(data: Any, loc: Loc) -> Any:
    """The value at ``loc`` in plain YAML data, or None where there is none."""
    for part in loc:
        if isinstance(part, int):
            data = data[part] if isinstance(data, list) and 0 <= part < len(data) else None
        else:
            data = data.get(part) if isinstance(data, dict) else None
    return data
