"""Metrics regression gate: compare fresh metrics with a committed baseline, per rule."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import fileio
from .errors import GateError
from .tracking import flatten

DIRECTIONS = ("lower", "higher", "equal")


@dataclass(frozen=True)
class Rule:
    pattern: str
    direction: str  # lower: smaller is better; higher: larger is better; equal: must not change
    rel_tol: float = 0.0  # allowed worsening as a fraction of |baseline|
    abs_tol: float = 0.0  # allowed worsening in the metric's own unit


@dataclass(frozen=True)
class Check:
    metric: str
    baseline: float
    current: float | None
    limit: float | None
    ok: bool
    why: str


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Nested metrics -> {'pca.mse': 0.0168, 'pca.mse_digit.0': ...}, numbers only."""
    return {k: float(v) for k, v in flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def load_rules(path: str | Path) -> list[Rule]:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise GateError(f"gate: cannot read rules {path}: {exc}") from None
    rules = []
    for i, r in enumerate((raw or {}).get("rules", [])):
        if not isinstance(r, dict) or "metric" not in r or r.get("direction") not in DIRECTIONS:
            raise GateError(f"gate: rule {i} in {path} needs 'metric' and 'direction' (one of {', '.join(DIRECTIONS)}): {r}")
        unknown = set(r) - {"metric", "direction", "rel_tol", "abs_tol"}
        if unknown:
            raise GateError(f"gate: rule {i} in {path} has unknown keys {sorted(unknown)}")
        rel, ab = float(r.get("rel_tol", 0.0)), float(r.get("abs_tol", 0.0))
        if rel < 0 or ab < 0:
            raise GateError(f"gate: rule {i} in {path}: tolerances must be >= 0")
        rules.append(Rule(str(r["metric"]), r["direction"], rel, ab))
    if not rules:
        raise GateError(f"gate: {path} has no rules")
    return rules


def rule_for(metric: str, rules: list[Rule]) -> Rule | None:
    return next((r for r in rules if fnmatch.fnmatchcase(metric, r.pattern)), None)


def check_metric(metric: str, baseline: float, current: float | None, rule: Rule) -> Check:
    if current is None or not math.isfinite(current):
        return Check(metric, baseline, current, None, False, "missing" if current is None else "not finite")
    slack = rule.abs_tol + rule.rel_tol * abs(baseline)
    if rule.direction == "lower":
        limit = baseline + slack
        ok = current <= limit
    elif rule.direction == "higher":
        limit = baseline - slack
        ok = current >= limit
    else:
        limit = baseline
        ok = abs(current - baseline) <= slack
    return Check(metric, baseline, current, limit, ok, "ok" if ok else f"regressed ({rule.direction} is better)")


def compare(baseline: dict, current: dict, rules: list[Rule]) -> list[Check]:
    """One check per baseline metric; a metric with no rule is an error, not a pass."""
    base, cur = numeric_metrics(baseline), numeric_metrics(current)
    checks = []
    for metric, value in base.items():
        rule = rule_for(metric, rules)
        if rule is None:
            raise GateError(f"gate: no rule matches metric '{metric}'; add one to the rules file")
        checks.append(check_metric(metric, value, cur.get(metric), rule))
    return checks


def run(baseline_path: str | Path, current_path: str | Path, rules_path: str | Path) -> list[Check]:
    def read(path):
        try:
            return fileio.read_json(path)
        except (OSError, ValueError) as exc:
            raise GateError(f"gate: cannot read metrics {path}: {exc}") from None

    return compare(read(baseline_path), read(current_path), load_rules(rules_path))


def format_checks(checks: list[Check]) -> str:
    lines = [f"{'metric':<32} {'baseline':>12} {'current':>12} {'limit':>12}  result"]
    for c in checks:
        cur = "-" if c.current is None else f"{c.current:.6g}"
        lim = "-" if c.limit is None else f"{c.limit:.6g}"
        lines.append(f"{c.metric:<32} {c.baseline:>12.6g} {cur:>12} {lim:>12}  {c.why}")
    failed = sum(not c.ok for c in checks)
    lines.append(f"gate: {len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)
