"""Metrics regression gate: compare fresh metrics with a committed baseline, per rule.

A metric summarised over seeds (``{'mean', 'std', 'n', ...}`` in metrics.json) fails only
when its mean is worse than the baseline's by more than the noise both runs measured
allows: Welch's t-test, one-sided, at the rule's ``alpha`` (the chance that an unchanged
codec, retrained on another machine or seed, fails). A worsening within the rule's floor
(``abs_floor + rel_floor * |baseline|``) always passes, so float noise on a deterministic
codec (PCA: n = 1 on both sides) never fails it; beyond the floor a deterministic metric
fails. Plain numbers (code size, stored numbers) are compared against the floor alone.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import fileio
from ..errors import GateError
from .stats import is_summary, one_sided_p, t_quantile, welch

DIRECTIONS = ("lower", "higher", "equal")
DEFAULT_ALPHA = 0.005
RULE_KEYS = {"metric", "direction", "rel_floor", "abs_floor", "alpha"}


@dataclass(frozen=True)
class Rule:
    pattern: str
    direction: str  # lower: smaller is better; higher: larger is better; equal: must not change
    rel_floor: float = 0.0  # a worsening up to this fraction of |baseline| always passes
    abs_floor: float = 0.0  # ... plus this much, in the metric's own unit
    alpha: float = DEFAULT_ALPHA  # one-sided false-alarm probability for summaries over seeds


@dataclass(frozen=True)
class Check:
    metric: str
    baseline: float  # the mean, for a summary
    current: float | None
    limit: float | None  # the worst current value that passes, given both runs' spread
    ok: bool
    why: str
    p: float | None = None  # Welch's one-sided p-value, for summaries over seeds
    n: tuple[int, int] | None = None  # seeds (baseline, current), for summaries


def gated_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics -> {'ae.mse': {summary}, 'ae.code_size': 32, ...}: summaries over seeds
    and plain numbers, keyed by dotted path (lists and text are not gated)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if is_summary(value):
            out[name] = value
        elif isinstance(value, dict):
            out.update(gated_metrics(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def load_rules(path: str | Path) -> list[Rule]:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise GateError(f"gate: cannot read rules {path}: {exc}") from None
    raw = raw or {}
    default_alpha = raw.get("alpha", DEFAULT_ALPHA)
    rules = []
    for i, r in enumerate(raw.get("rules", [])):
        if not isinstance(r, dict) or "metric" not in r or r.get("direction") not in DIRECTIONS:
            raise GateError(
                f"gate: rule {i} in {path} needs 'metric' and 'direction' (one of {', '.join(DIRECTIONS)}): {r}"
            )
        unknown = set(r) - RULE_KEYS
        if unknown:
            raise GateError(
                f"gate: rule {i} in {path} has unknown keys {sorted(unknown)}; allowed: {sorted(RULE_KEYS)}"
            )
        rel, ab, alpha = (
            float(r.get("rel_floor", 0.0)),
            float(r.get("abs_floor", 0.0)),
            float(r.get("alpha", default_alpha)),
        )
        if rel < 0 or ab < 0:
            raise GateError(f"gate: rule {i} in {path}: floors must be >= 0")
        if not 0 < alpha < 0.5:
            raise GateError(f"gate: rule {i} in {path}: alpha must be between 0 and 0.5, found {alpha}")
        rules.append(Rule(str(r["metric"]), r["direction"], rel, ab, alpha))
    if not rules:
        raise GateError(f"gate: {path} has no rules")
    return rules


def rule_for(metric: str, rules: list[Rule]) -> Rule | None:
    return next((r for r in rules if fnmatch.fnmatchcase(metric, r.pattern)), None)


def _worsening(rule: Rule, baseline: float, current: float) -> float:
    if rule.direction == "lower":
        return current - baseline
    if rule.direction == "higher":
        return baseline - current
    return abs(current - baseline)


def _limit(rule: Rule, baseline: float, margin: float) -> float:
    return baseline - margin if rule.direction == "higher" else baseline + margin


def check_value(metric: str, baseline: float, current: float | None, rule: Rule) -> Check:
    """A plain number: worse than the baseline by more than the floor fails."""
    if current is None or not math.isfinite(current):
        return Check(metric, baseline, current, None, False, "missing" if current is None else "not finite")
    floor = rule.abs_floor + rule.rel_floor * abs(baseline)
    ok = _worsening(rule, baseline, current) <= floor
    return Check(
        metric,
        baseline,
        current,
        _limit(rule, baseline, floor),
        ok,
        "ok" if ok else f"regressed ({rule.direction} is better)",
    )


def check_summary(metric: str, baseline: dict, current: Any, rule: Rule) -> Check:
    """A summary over seeds: Welch's one-sided t-test of the means, beyond the floor."""
    base_mean = float(baseline["mean"])
    if not is_summary(current):
        why = "missing" if current is None else "not a summary over seeds (mean, std, n)"
        return Check(metric, base_mean, None, None, False, why)
    cur_mean = float(current["mean"])
    if not math.isfinite(cur_mean):
        return Check(metric, base_mean, cur_mean, None, False, "not finite")
    nb, nc = int(baseline["n"]), int(current["n"])
    floor = rule.abs_floor + rule.rel_floor * abs(base_mean)
    worse = _worsening(rule, base_mean, cur_mean)
    if nb == 1 and nc == 1:  # deterministic on both sides: the floor alone
        ok = worse <= floor
        return Check(
            metric,
            base_mean,
            cur_mean,
            _limit(rule, base_mean, floor),
            ok,
            "ok (deterministic)" if ok else f"regressed beyond the floor ({rule.direction} is better)",
            n=(nb, nc),
        )
    if nb < 2 or nc < 2:
        raise GateError(
            f"gate: {metric}: {nb} seed(s) in the baseline and {nc} now; comparing against the "
            "noise needs at least 2 on each side (params: n_seeds)"
        )
    se, df = welch(baseline, current)
    p = one_sided_p(worse, baseline, current)
    margin = max(floor, t_quantile(1 - rule.alpha, df) * se)
    ok = worse <= margin
    why = "ok" if ok else f"regressed: p = {p:.2g} < alpha {rule.alpha:g} ({rule.direction} is better)"
    return Check(metric, base_mean, cur_mean, _limit(rule, base_mean, margin), ok, why, p, (nb, nc))


def compare(baseline: dict, current: dict, rules: list[Rule]) -> list[Check]:
    """One check per baseline metric; a metric with no rule is an error, not a pass."""
    base, cur = gated_metrics(baseline), gated_metrics(current)
    checks = []
    for metric, value in base.items():
        rule = rule_for(metric, rules)
        if rule is None:
            raise GateError(f"gate: no rule matches metric '{metric}'; add one to the rules file")
        if is_summary(value):
            checks.append(check_summary(metric, value, cur.get(metric), rule))
        else:
            got = cur.get(metric)
            checks.append(check_value(metric, value, got if isinstance(got, float) else None, rule))
    return checks


def run(baseline_path: str | Path, current_path: str | Path, rules_path: str | Path) -> list[Check]:
    def read(path: str | Path) -> dict:
        try:
            return fileio.read_json(path)
        except (OSError, ValueError) as exc:
            raise GateError(f"gate: cannot read metrics {path}: {exc}") from None

    return compare(read(baseline_path), read(current_path), load_rules(rules_path))


def format_checks(checks: list[Check]) -> str:
    lines = [
        f"{'metric':<28} {'baseline':>10} {'current':>10} {'change':>8} {'limit':>10} {'seeds':>6} {'p':>8}  result"
    ]
    for c in checks:
        cur = "-" if c.current is None else f"{c.current:.6g}"
        lim = "-" if c.limit is None else f"{c.limit:.6g}"
        change = "-" if c.current is None or c.baseline == 0 else f"{(c.current / c.baseline - 1) * 100:+.2f}%"
        seeds = "-" if c.n is None else f"{c.n[0]}/{c.n[1]}"
        p = "-" if c.p is None else f"{c.p:.2g}"
        lines.append(f"{c.metric:<28} {c.baseline:>10.6g} {cur:>10} {change:>8} {lim:>10} {seeds:>6} {p:>8}  {c.why}")
    failed = sum(not c.ok for c in checks)
    lines.append(f"gate: {len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)
