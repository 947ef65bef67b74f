"""Metrics regression gate: compare fresh metrics with a committed baseline, per rule.

It reads the detail file (reports/metrics_detail.json): each codec's summaries over seeds,
each seed's value, the seeds themselves and the settings the models were trained with.

* **Paired**, where both sides trained the same seeds with the same settings (model spec,
  training params, training and evaluation data): each seed's model is compared with its own
  baseline, so the seed-to-seed spread cancels out and what is left is float-path noise (other
  CPU kernels, another thread plan), which moves a seed's model by well under 1%. The mean of
  the per-seed changes (equal to the change of the mean) fails when it is worse than
  ``paired_abs + paired_rel * |baseline|``: a tolerance calibrated on measured float-path
  differences (docs/gate.md), not on the seeds' spread.
* **Unpaired**, where the seeds or settings differ (another ``seed``, another ``n_seeds``, or
  a side with no seeds recorded): Welch's t-test, one-sided, at the rule's ``alpha`` (the
  chance that an unchanged codec retrained on other seeds fails), beyond the rule's floor.
* **Deterministic** (PCA: one model on each side): the floor alone
  (``abs_floor + rel_floor * |baseline|``) covers float rounding.

Plain numbers (code size, stored numbers) are compared against the floor alone. Every check
says which test it used and why.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from .. import config, fileio, keys
from ..errors import GateError
from .stats import is_summary, one_sided_p, t_quantile, welch

DIRECTIONS = ("lower", "higher", "equal")
DEFAULT_ALPHA = 0.005


@dataclass(frozen=True)
class Rule:
    pattern: str
    direction: str  # lower: smaller is better; higher: larger is better; equal: must not change
    rel_floor: float = 0.0  # a worsening up to this fraction of |baseline| always passes
    abs_floor: float = 0.0  # ... plus this much, in the metric's own unit
    alpha: float = DEFAULT_ALPHA  # one-sided false-alarm probability for summaries over seeds
    paired_rel: float | None = None  # paired test: a worsening of the mean up to this fraction of |baseline| ...
    paired_abs: float = 0.0  # ... plus this much passes; None: this metric is never paired

    @property
    def pairs(self) -> bool:
        return self.paired_rel is not None


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
    test: str = "floor"  # paired | Welch | floor (deterministic or a plain number) | equal
    basis: str = ""  # why that test: the pairing of the two runs' seeds and settings


@dataclass(frozen=True)
class Pairing:
    """Whether two runs of a codec trained the same seeds with the same settings."""

    paired: bool
    why: str


def pairing(baseline: dict, current: dict) -> Pairing:
    """Paired when both sides name the same seeds, in the same order, and the same settings."""
    bs, cs = baseline.get("seeds") or [], current.get("seeds") or []
    if not bs or not cs:
        side = "either side" if not bs and not cs else ("the baseline" if not bs else "the current run")
        return Pairing(False, f"no seeds recorded in {side}")
    if len(bs) != len(cs):
        return Pairing(False, f"{len(bs)} seeds vs {len(cs)}")
    if bs != cs:
        return Pairing(False, "other seeds")
    b, c = keys.flatten(baseline.get("settings") or {}), keys.flatten(current.get("settings") or {})
    differ = sorted(k for k in b.keys() | c.keys() if b.get(k) != c.get(k))
    if differ:
        shown = ", ".join(differ[:2]) + (f" +{len(differ) - 2}" if len(differ) > 2 else "")
        return Pairing(False, f"settings differ: {shown}")
    return Pairing(True, f"same {len(bs)} seeds and settings")


def gated_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics -> {'ae.mse': {summary}, 'ae.code_size': 32, ...}: summaries over seeds
    and plain numbers, keyed by dotted path (lists, text and a codec's training settings are
    not gated)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if key == "settings":
            continue
        if is_summary(value):
            out[name] = value
        elif isinstance(value, dict):
            out.update(gated_metrics(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


Fraction = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Alpha = Annotated[float, Strict(), Field(gt=0, lt=0.5)]


class RuleEntry(BaseModel):
    """One rule of metrics_gate.yaml, as written (see :class:`Rule`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Annotated[str, Field(min_length=1, json_schema_extra={"accepts": "a metric name or pattern, e.g. *.mse"})]
    direction: Literal[DIRECTIONS]  # type: ignore[valid-type]
    rel_floor: Fraction = 0.0
    abs_floor: Fraction = 0.0
    alpha: Alpha | None = None  # the file's alpha where unset
    paired_rel: Fraction | None = None
    paired_abs: Fraction = 0.0


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: Alpha = DEFAULT_ALPHA
    rules: Annotated[list[RuleEntry], Field(min_length=1, json_schema_extra={"accepts": "a non-empty list of rules"})]


def load_rules(path: str | Path) -> list[Rule]:
    """The rules of a metrics_gate.yaml; a bad file raises GateError naming the file, the line and the key."""
    doc = config.read_yaml(path, error=GateError, what="the gate's rules")
    file = config.check(RulesFile, doc, error=GateError, empty_ok=False)
    return [
        Rule(
            r.metric,
            r.direction,
            r.rel_floor,
            r.abs_floor,
            file.alpha if r.alpha is None else r.alpha,
            0.0 if r.paired_rel is None and "paired_abs" in r.model_fields_set else r.paired_rel,
            r.paired_abs,
        )
        for r in file.rules
    ]


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


def _within(rule: Rule, baseline: float, current: float, margin: float) -> tuple[bool, float]:
    """(passes, limit): worse than ``baseline`` by at most ``margin``. The value is held to the
    limit itself, so that the limit shown is the limit applied, to the last bit (baseline +
    margin, rounded, is not always reached by current - baseline <= margin)."""
    limit = _limit(rule, baseline, margin)
    if rule.direction == "lower":
        return current <= limit, limit
    if rule.direction == "higher":
        return current >= limit, limit
    return abs(current - baseline) <= margin, limit


def check_value(metric: str, baseline: float, current: float | None, rule: Rule) -> Check:
    """A plain number: worse than the baseline by more than the floor fails."""
    if current is None or not math.isfinite(current):
        return Check(metric, baseline, current, None, False, "missing" if current is None else "not finite")
    floor = rule.abs_floor + rule.rel_floor * abs(baseline)
    test = "equal" if rule.direction == "equal" else "floor"
    return _held_to(metric, rule, baseline, current, floor, test=test, basis="a plain number")


def _held_to(metric: str, rule: Rule, baseline: float, current: float, margin: float, **how: Any) -> Check:
    """The check of a value that passes when it is worse than the baseline by at most ``margin``;
    ``how``: the Check's n, test and basis."""
    ok, limit = _within(rule, baseline, current, margin)
    return Check(metric, baseline, current, limit, ok, "ok" if ok else "regressed", **how)


def check_summary(metric: str, baseline: dict, current: Any, rule: Rule, pair: Pairing | None = None) -> Check:
    """A summary over seeds: paired against each seed's baseline where ``pair`` says the two
    runs trained the same seeds with the same settings, else Welch's one-sided t-test of the
    means; beyond the floor either way."""
    base_mean = float(baseline["mean"])
    if not is_summary(current):
        why = "missing" if current is None else "not a summary over seeds (mean, std, n)"
        return Check(metric, base_mean, None, None, False, why)
    cur_mean = float(current["mean"])
    if not math.isfinite(cur_mean):
        return Check(metric, base_mean, cur_mean, None, False, "not finite")
    nb, nc = int(baseline["n"]), int(current["n"])
    floor = rule.abs_floor + rule.rel_floor * abs(base_mean)
    if nb == 1 and nc == 1:  # deterministic on both sides: the floor alone
        return _held_to(metric, rule, base_mean, cur_mean, floor, n=(nb, nc), basis="deterministic")  # test: floor
    if pair is not None and pair.paired and rule.pairs and "per_seed" in baseline and "per_seed" in current:
        # the mean of the per-seed changes is the change of the mean: the seeds' spread cancels
        assert rule.paired_rel is not None  # rule.pairs
        tolerance = rule.paired_abs + rule.paired_rel * abs(base_mean)
        return _held_to(metric, rule, base_mean, cur_mean, tolerance, n=(nb, nc), test="paired", basis=pair.why)
    basis = pair.why if pair is not None else "seeds not compared"
    if pair is not None and pair.paired:
        basis = "this metric has no paired tolerance" if not rule.pairs else "no per-seed values"
    if nb < 2 or nc < 2:
        raise GateError(
            f"gate: {metric}: {nb} seed(s) in the baseline and {nc} now, and not paired ({basis}); "
            "comparing against the noise needs at least 2 on each side (params: n_seeds)"
        )
    se, df = welch(baseline, current)
    p = one_sided_p(_worsening(rule, base_mean, cur_mean), baseline, current)  # the decision is the limit's
    margin = max(floor, t_quantile(1 - rule.alpha, df) * se)
    ok, limit = _within(rule, base_mean, cur_mean, margin)
    why = "ok" if ok else f"regressed, p = {p:.2g} < {rule.alpha:g}"
    return Check(metric, base_mean, cur_mean, limit, ok, why, p, (nb, nc), "Welch", basis)


def _is_headline(metrics: dict) -> bool:
    """metrics.json's headline numbers (``{'ae': {'mse': 0.0138, ...}}``), not the detail file."""
    return bool(metrics) and all(
        isinstance(m, dict) and isinstance(m.get("mse"), (int, float)) for m in metrics.values()
    )


def compare(baseline: dict, current: dict, rules: list[Rule]) -> list[Check]:
    """One check per baseline metric; a metric with no rule is an error, not a pass."""
    for name, side in (("baseline", baseline), ("current", current)):
        if _is_headline(side):
            raise GateError(
                f"gate: the {name} file holds headline metrics (metrics.json); the gate reads the "
                "detail file, reports/metrics_detail.json, with each seed's value and its seed"
            )
    pairs = {
        codec: pairing(b, current[codec])
        for codec, b in baseline.items()
        if isinstance(b, dict) and isinstance(current.get(codec), dict)
    }
    base, cur = gated_metrics(baseline), gated_metrics(current)
    checks = []
    for metric, value in base.items():
        rule = rule_for(metric, rules)
        if rule is None:
            raise GateError(f"gate: no rule matches metric '{metric}'; add one to the rules file")
        if is_summary(value):
            checks.append(check_summary(metric, value, cur.get(metric), rule, pairs.get(metric.split(".")[0])))
        else:
            got = cur.get(metric)
            checks.append(check_value(metric, value, got if isinstance(got, float) else None, rule))
    return checks


def read_metrics(path: str | Path) -> dict:
    try:
        return fileio.read_json(path)
    except (OSError, ValueError) as exc:
        raise GateError(f"gate: cannot read metrics {path}: {exc}") from None


HEADLINE_METRICS = ("mse", "psnr", "code_size", "stored_numbers")


def is_headline(metric: str) -> bool:
    """A codec's headline check (``ae.mse``), not one of its per-digit ones (``ae.mse_digit.3``)."""
    return metric.partition(".")[2] in HEADLINE_METRICS


def change_text(reference: float | None, current: float | None) -> str:
    """``current`` against ``reference`` in percent, as the gate shows and records it: '+10.60%'."""
    if reference is None or current is None or reference == 0:
        return "-"
    return f"{(current / reference - 1) * 100:+.2f}%"
