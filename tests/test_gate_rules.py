"""The gate's decisions, one rule at a time: direction, limit, test, pairing, the rules file.

Each test states the decision it holds; where a rule holds for every value (an improvement
passes, a worse result than a failing one fails, the limit shown is the limit applied) it is a
Hypothesis property over values, in both directions.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_codec.errors import GateError
from mnist_codec.evaluation import gate, gate_report
from mnist_codec.evaluation.gate import Rule, check_summary, check_value, compare, gated_metrics, pairing
from mnist_codec.evaluation.stats import summarize

FAST = settings(max_examples=50, deadline=None)
BASE = st.floats(0.001, 100.0)
FACTOR = st.floats(0.5, 2.0)
LOWER = Rule("x.mse", "lower", rel_floor=0.01, abs_floor=0.001)
HIGHER = Rule("x.psnr", "higher", rel_floor=0.01, abs_floor=0.001)
EQUAL = Rule("x.code_size", "equal", abs_floor=0.5)
SEEDS = [11, 22, 33]
SETTINGS = {"train": {"epochs": 10, "lr": 0.001}, "eval_data": "abc"}


def worse(rule: Rule, value: float, by: float) -> float:
    """``value`` moved ``by`` in the bad direction of ``rule``."""
    return value - by if rule.direction == "higher" else value + by


def side(values, seeds=SEEDS, settings=SETTINGS) -> dict:
    return {"mse": summarize(values), "seeds": seeds, "settings": settings}


# --- plain numbers and the floor ------------------------------------------------------------


@FAST
@given(BASE, FACTOR, st.sampled_from([LOWER, HIGHER]))
def test_a_plain_number_fails_exactly_when_it_is_worse_than_its_limit(base, factor, rule):
    current = base * factor
    check = check_value(rule.pattern, base, current, rule)
    margin = rule.abs_floor + rule.rel_floor * base
    assert check.limit == pytest.approx(worse(rule, base, margin))
    bad = current > check.limit if rule.direction == "lower" else current < check.limit
    assert check.ok is not bad and check.why == ("regressed" if bad else "ok")
    assert (check.test, check.basis, check.baseline, check.current) == ("floor", "a plain number", base, current)


@FAST
@given(BASE, st.floats(0.0, 1.0, allow_subnormal=False), st.sampled_from([LOWER, HIGHER]))
def test_an_improvement_always_passes(base, gain, rule):
    better = worse(rule, base, -gain * base)
    assert check_value(rule.pattern, base, better, rule).ok


@FAST
@given(BASE, st.sampled_from([LOWER, HIGHER]))
def test_the_limit_shown_is_the_limit_applied(base, rule):
    limit = check_value(rule.pattern, base, base, rule).limit
    assert limit is not None
    assert check_value(rule.pattern, base, limit, rule).ok  # the worst value that passes
    beyond = worse(rule, limit, 1e-9 * max(1.0, abs(limit)))
    assert not check_value(rule.pattern, base, beyond, rule).ok


@FAST
@given(BASE, st.floats(0.0, 10.0, allow_subnormal=False))
def test_an_equal_metric_fails_when_it_moves_either_way(base, move):
    up, down = (
        check_value("x.code_size", base, base + move, EQUAL),
        check_value("x.code_size", base, base - move, EQUAL),
    )
    assert up.ok == down.ok == (move <= 0.5)
    assert up.test == "equal" and up.limit == base + 0.5


@pytest.mark.parametrize(("current", "why"), [(None, "missing"), (math.nan, "not finite"), (math.inf, "not finite")])
def test_a_missing_or_non_finite_number_fails(current, why):
    check = check_value("x.mse", 1.0, current, LOWER)
    assert (check.ok, check.why, check.limit, check.baseline, check.metric) == (False, why, None, 1.0, "x.mse")
    assert check.current is current


# --- summaries over seeds: deterministic, paired, Welch ----------------------------------------


@FAST
@given(st.lists(st.floats(0.005, 0.02), min_size=2, max_size=5), FACTOR, st.sampled_from(["lower", "higher"]))
def test_the_gate_is_monotone(values, factor, direction):
    """If a result passes, every better one passes; if it fails, every worse one fails."""
    rule = Rule("x.mse", direction, rel_floor=0.005, paired_rel=0.02)
    seeds = list(range(len(values)))
    base = side(values, seeds)["mse"]

    def ok(f: float, paired: bool) -> bool:
        cur = side([v * f for v in values], seeds)
        return check_summary("x.mse", base, cur["mse"], rule, gate.Pairing(paired, "test")).ok

    step = 1.05 if direction == "lower" else 1 / 1.05  # a step to a worse result
    for paired in (True, False):
        if ok(factor, paired):
            assert ok(factor / step, paired)
        else:
            assert not ok(factor * step, paired)


@pytest.mark.parametrize("direction", ["lower", "higher"])
def test_paired_the_limit_is_the_paired_tolerance_in_the_bad_direction(direction):
    rule = Rule("x.mse", direction, rel_floor=0.5, paired_rel=0.02, paired_abs=0.001)
    base = summarize([1.0, 1.1, 0.9])
    tolerance = 0.001 + 0.02 * 1.0
    at_limit = summarize([v + (tolerance if direction == "lower" else -tolerance) for v in [1.0, 1.1, 0.9]])
    check = check_summary("x.mse", base, at_limit, rule, gate.Pairing(True, "same 3 seeds and settings"))
    assert check.test == "paired" and check.basis == "same 3 seeds and settings" and check.n == (3, 3)
    assert check.limit == pytest.approx(worse(rule, 1.0, tolerance))
    assert check.ok  # the floor (50%) is not what a paired check is held to
    beyond = summarize([v * 1.03 if direction == "lower" else v * 0.97 for v in [1.0, 1.1, 0.9]])
    assert not check_summary("x.mse", base, beyond, rule, gate.Pairing(True, "same")).ok


@pytest.mark.parametrize("direction", ["lower", "higher"])
def test_welch_margin_is_the_larger_of_the_floor_and_the_noise(direction):
    rule = Rule("x.mse", direction, rel_floor=0.001, alpha=0.01)
    base, cur = summarize([1.0, 1.2, 0.8]), summarize([1.0, 1.1, 0.9])
    check = check_summary("x.mse", base, cur, rule)
    from mnist_codec.evaluation.stats import t_quantile, welch

    se, df = welch(base, cur)
    noise = t_quantile(0.99, df) * se
    assert noise > 0.001 and check.limit == pytest.approx(worse(rule, 1.0, noise))
    assert check.test == "Welch" and check.basis == "seeds not compared" and check.n == (3, 3) and check.ok
    assert check.why == "ok"
    wide = check_summary("x.mse", base, cur, Rule("x.mse", direction, rel_floor=2.0))  # floor beyond the noise
    assert wide.limit == pytest.approx(worse(rule, 1.0, 2.0))
    flat = summarize([1.0, 1.0, 1.0])
    bad = check_summary("x.mse", flat, summarize([worse(rule, 1.0, 0.5)] * 3), rule)  # exact in binary: no spread
    assert not bad.ok and bad.p == 0.0 and bad.why == "regressed, p = 0 < 0.01"


def test_deterministic_on_both_sides_is_held_to_the_floor_alone():
    rule = Rule("pca.mse", "lower", rel_floor=0.002)
    check = check_summary("pca.mse", summarize([1.0]), summarize([1.002]), rule)
    assert (check.ok, check.test, check.basis, check.n) == (True, "floor", "deterministic", (1, 1))
    assert not check_summary("pca.mse", summarize([1.0]), summarize([1.0021]), rule).ok


def test_a_paired_check_needs_a_paired_tolerance_and_each_seeds_values():
    rule = Rule("x.mse", "lower", rel_floor=0.005, paired_rel=0.01)
    base, cur = summarize([1.0, 1.1, 0.9]), summarize([1.0, 1.1, 0.9])
    same = gate.Pairing(True, "same 3 seeds and settings")
    unpaired_rule = check_summary("x.mse", base, cur, Rule("x.mse", "lower"), same)
    assert unpaired_rule.test == "Welch" and unpaired_rule.basis == "this metric has no paired tolerance"
    no_seeds = {k: v for k, v in cur.items() if k != "per_seed"}
    assert check_summary("x.mse", base, no_seeds, rule, same).basis == "no per-seed values"
    no_base_seeds = {k: v for k, v in base.items() if k != "per_seed"}
    assert check_summary("x.mse", no_base_seeds, cur, rule, same).test == "Welch"
    other = check_summary("x.mse", base, cur, rule, gate.Pairing(False, "other seeds"))
    assert (other.test, other.basis) == ("Welch", "other seeds")


@pytest.mark.parametrize(("current", "why"), [(None, "missing"), (0.5, "not a summary over seeds (mean, std, n)")])
def test_a_summary_that_is_missing_or_not_a_summary_fails(current, why):
    check = check_summary("x.mse", summarize([1.0, 1.1]), current, LOWER)
    assert (check.ok, check.why, check.current, check.limit, check.baseline) == (False, why, None, None, 1.05)


def test_a_non_finite_mean_fails():
    nan = {"mean": math.nan, "std": 0.0, "n": 3}
    check = check_summary("x.mse", summarize([1.0, 1.1]), nan, LOWER)
    assert (check.ok, check.why, check.limit) == (False, "not finite", None) and math.isnan(check.current)
    assert (check.metric, check.baseline) == ("x.mse", 1.05)


@pytest.mark.parametrize(("nb", "nc"), [(1, 3), (3, 1)])
def test_one_seed_unpaired_against_several_is_an_error_naming_the_metric(nb, nc):
    base, cur = summarize([1.0, 1.1, 0.9][:nb]), summarize([1.0, 1.1, 0.9][:nc])
    with pytest.raises(GateError, match=rf"gate: x\.mse: {nb} seed\(s\) in the baseline and {nc} now"):
        check_summary("x.mse", base, cur, LOWER, gate.Pairing(False, "1 seeds vs 3"))


# --- pairing and what is gated ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "cur", "paired", "why"),
    [
        ({}, {}, False, "no seeds recorded in either side"),
        ({}, {"seeds": [1]}, False, "no seeds recorded in the baseline"),
        ({"seeds": [1]}, {}, False, "no seeds recorded in the current run"),
        ({"seeds": [1, 2]}, {"seeds": [1]}, False, "2 seeds vs 1"),
        ({"seeds": [1, 2]}, {"seeds": [2, 1]}, False, "other seeds"),
        ({"seeds": [1, 2], "settings": {"a": 1}}, {"seeds": [1, 2], "settings": {"a": 2}}, False, "settings differ: a"),
        ({"seeds": [1], "settings": {"a": {"b": 1}}}, {"seeds": [1]}, False, "settings differ: a.b"),
        ({"seeds": [1], "settings": {"epochX": 1}}, {"seeds": [1]}, False, "settings differ: epochX"),
        (
            {"seeds": [1], "settings": {"a": 1, "b": 1, "c": 1}},
            {"seeds": [1], "settings": {"a": 2, "b": 2, "c": 2}},
            False,
            "settings differ: a, b +1",
        ),
        (
            {"seeds": [1], "settings": {"a": 1, "b": 1}},
            {"seeds": [1], "settings": {"a": 2, "b": 2}},
            False,
            "settings differ: a, b",
        ),
        (
            {"seeds": [1, 2], "settings": {"a": 1}},
            {"seeds": [1, 2], "settings": {"a": 1}},
            True,
            "same 2 seeds and settings",
        ),
    ],
)
def test_pairing_needs_the_same_seeds_in_order_and_the_same_settings(base, cur, paired, why):
    assert pairing(base, cur) == gate.Pairing(paired, why)


def test_what_is_gated_summaries_and_plain_numbers_not_settings_text_or_flags():
    s = summarize([1.0, 2.0])
    metrics = {
        "ae": {
            "mse": s,
            "code_size": 32,
            "ratio": 0.5,
            "flag": True,
            "name": "x",
            "seeds": [1, 2],
            "settings": {"n": 1},
        },
        "pca": {"mse_digit": {"3": s}},
    }
    assert gated_metrics(metrics) == {"ae.mse": s, "ae.code_size": 32.0, "ae.ratio": 0.5, "pca.mse_digit.3": s}
    assert isinstance(gated_metrics(metrics)["ae.code_size"], float)


def test_compare_checks_every_baseline_metric_with_its_own_pairing():
    rules = [Rule("*.mse", "lower", rel_floor=0.005, paired_rel=0.01), Rule("*.code_size", "equal")]
    base = {"a": {**side([1.0, 1.1, 0.9]), "code_size": 32}, "b": side([1.0, 1.1, 0.9], seeds=[7, 8, 9])}
    cur = {"a": {**side([1.0, 1.1, 0.9]), "code_size": summarize([32, 32])}, "b": side([1.0, 1.1, 0.9])}
    checks = {c.metric: c for c in compare(base, cur, rules)}
    assert list(checks) == ["a.mse", "a.code_size", "b.mse"]
    assert checks["a.mse"].test == "paired" and checks["b.mse"].basis == "other seeds"
    assert checks["a.code_size"].why == "missing"  # a summary where a number was: not compared as one
    gone = {c.metric: c for c in compare(base, {"a": cur["a"]}, rules)}
    assert gone["b.mse"].why == "missing" and gone["b.mse"].basis == ""


@pytest.mark.parametrize("which", ["baseline", "current"])
def test_a_headline_file_on_either_side_is_refused(which):
    detail = {"ae": {"mse": summarize([1.0, 1.1])}}
    headline = {"ae": {"mse": 1.05, "psnr": 18.0}}
    sides = (headline, detail) if which == "baseline" else (detail, headline)
    with pytest.raises(GateError, match=f"the {which} file holds headline metrics"):
        compare(*sides, [Rule("*", "lower")])


def test_a_file_of_other_shapes_is_not_taken_for_headline_metrics():
    assert not gate._is_headline({})
    assert not gate._is_headline({"ae": {"mse": summarize([1.0])}, "x": 1})
    assert not gate._is_headline({"ae": {"mse": "0.01"}})
    assert gate._is_headline({"ae": {"mse": 1}, "pca": {"mse": 0.5}})


def test_the_first_matching_rule_wins_and_case_counts():
    rules = [Rule("pca.mse", "lower", rel_floor=0.1), Rule("*.mse", "lower"), Rule("*.PSNR", "higher")]
    assert gate.rule_for("pca.mse", rules) is rules[0]
    assert gate.rule_for("ae.mse", rules) is rules[1]
    assert gate.rule_for("ae.psnr", rules) is None


def test_headline_checks_are_a_codecs_own_numbers():
    assert [gate.is_headline(m) for m in ("ae.mse", "ae.psnr", "ae.code_size", "ae.stored_numbers")] == [True] * 4
    assert not gate.is_headline("ae.mse_digit.3") and not gate.is_headline("mse")


# --- the rules file ---------------------------------------------------------------------------


def rules_from(tmp_path, text: str) -> list[Rule]:
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    return gate.load_rules(f)


def test_a_rules_file_is_read_whole(tmp_path):
    rules = rules_from(
        tmp_path,
        "alpha: 0.01\nrules:\n"
        "  - {metric: 'pca.mse', direction: lower, rel_floor: 0.002, abs_floor: 0.1}\n"
        "  - {metric: '*.mse', direction: lower, paired_rel: 0.02, paired_abs: 0.001, alpha: 0.05}\n"
        "  - {metric: '*.x', direction: higher, paired_abs: 0.3}\n"
        "  - {metric: '7', direction: equal}\n",
    )
    assert rules == [
        Rule("pca.mse", "lower", 0.002, 0.1, 0.01, None, 0.0),
        Rule("*.mse", "lower", 0.0, 0.0, 0.05, 0.02, 0.001),
        Rule("*.x", "higher", 0.0, 0.0, 0.01, 0.0, 0.3),  # a paired_abs alone pairs, with no relative part
        Rule("7", "equal", 0.0, 0.0, 0.01, None, 0.0),
    ]
    assert not rules[0].pairs and rules[1].pairs and rules[2].pairs
    assert rules_from(tmp_path, "rules:\n  - {metric: a, direction: lower}\n")[0].alpha == gate.DEFAULT_ALPHA


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - {direction: lower}\n", r":2: 'rules\[0\].metric' is missing; expected a metric name or pattern"),
        (
            "rules:\n  - {metric: a, direction: down}\n",
            r":2: 'rules\[0\].direction' = 'down' is not allowed; expected one of lower, higher, equal$",
        ),
        ("rules:\n  - a.mse\n", r":2: 'rules\[0\]' = 'a.mse' is not allowed; expected a mapping of metric, direction"),
        (
            "rules:\n  - {metric: a, direction: lower}\n  - {metric: b, direction: lower, tol: 1}\n",
            r":3: unknown key 'rules\[1\].tol'; known keys are metric, direction, rel_floor, abs_floor, alpha",
        ),
        (
            "rules:\n  - {metric: 7, direction: equal}\n",
            r":2: 'rules\[0\].metric' = 7 is not allowed; expected a metric",
        ),
        (
            "rules:\n  - {metric: a, direction: lower, rel_floor: -0.1}\n",
            r"'rules\[0\].rel_floor' = -0.1 .* a number >= 0$",
        ),
        (
            "rules:\n  - {metric: a, direction: lower, abs_floor: -1}\n",
            r"'rules\[0\].abs_floor' = -1 .* a number >= 0$",
        ),
        (
            "rules:\n  - {metric: a, direction: lower, rel_floor: '1e-3'}\n",
            r"'rules\[0\].rel_floor' = '1e-3' .* a number >= 0 \(YAML reads 1e-3 as text; write 1.0e-3\)$",
        ),
        (
            "rules:\n  - {metric: a, direction: lower, alpha: 0}\n",
            r"'rules\[0\].alpha' = 0 .* above 0 up to \(not including\) 0.5",
        ),
        ("rules:\n  - {metric: a, direction: lower, alpha: 0.5}\n", r"'rules\[0\].alpha' = 0.5 is not allowed"),
        ("alpha: 0.7\nrules:\n  - {metric: a, direction: lower}\n", r":1: 'alpha' = 0.7 is not allowed"),
        (
            "rules:\n  - {metric: a, direction: lower, paired_rel: -0.1}\n",
            r"'rules\[0\].paired_rel' = -0.1 .* >= 0 or null$",
        ),
        ("rules:\n  - {metric: a, direction: lower, paired_abs: -0.1}\n", r"'rules\[0\].paired_abs' = -0.1 .* >= 0$"),
        ("rules: []\n", r":1: 'rules' = \[\] is not allowed; expected a non-empty list of rules$"),
        ("", r"rules.yaml: expected a mapping of alpha, rules, found nothing$"),
        ("rules: [\n", r"rules.yaml:2: not valid YAML: "),
    ],
)
def test_a_bad_rules_file_names_the_rule_and_the_problem(tmp_path, text, message):
    with pytest.raises(GateError, match=message) as info:
        rules_from(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path / "rules.yaml")) and "\n" not in str(info.value)


def test_edges_of_alpha_and_floors_are_allowed(tmp_path):
    rules = rules_from(
        tmp_path, "rules:\n  - {metric: a, direction: lower, alpha: 0.4999, rel_floor: 0, paired_rel: 0}\n"
    )
    assert rules[0].alpha == 0.4999 and rules[0].paired_rel == 0.0


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(GateError, match=f"^{tmp_path / 'none.yaml'}: not found \\(the gate's rules\\)$"):
        gate.load_rules(tmp_path / "none.yaml")
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(GateError, match=f"gate: cannot read metrics {bad}"):
        gate.read_metrics(bad)
    with pytest.raises(GateError, match="gate: cannot read metrics"):
        gate.read_metrics(tmp_path / "none.json")
    bad.write_text('{"ae": {"mse": 1}}')
    assert gate.read_metrics(bad) == {"ae": {"mse": 1}}


@FAST
@given(
    st.lists(st.floats(0.5, 2.0), min_size=2, max_size=5),
    st.lists(st.floats(0.5, 2.0), min_size=2, max_size=5),
    st.sampled_from(["lower", "higher", "equal"]),
)
def test_welchs_p_is_of_a_worsening_in_the_rules_direction(base_values, cur_values, direction):
    from scipy import stats as scipy_stats

    base, cur = summarize(base_values), summarize(cur_values)
    if base["std"] == 0 or cur["std"] == 0:
        return
    check = check_summary("x.m", base, cur, Rule("x.m", direction))
    diff = cur["mean"] - base["mean"]
    worse_by = {"lower": diff, "higher": -diff, "equal": abs(diff)}[direction]
    ref = scipy_stats.ttest_ind_from_stats(
        worse_by, cur["std"], cur["n"], 0.0, base["std"], base["n"], equal_var=False, alternative="greater"
    )
    assert check.p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_a_paired_tolerance_without_a_relative_part_is_its_absolute_part():
    rule = Rule("x.mse", "lower", rel_floor=0.5, paired_rel=0.0, paired_abs=0.01)
    check = check_summary(
        "x.mse", summarize([1.0, 1.1, 0.9]), summarize([1.0, 1.1, 0.9]), rule, gate.Pairing(True, "s")
    )
    assert check.test == "paired" and check.limit == pytest.approx(1.01)


CHECKS = [
    gate.Check(
        "ae.mse", 0.0138, 0.01449, 0.014007, False, "regressed", None, (3, 3), "paired", "same 3 seeds and settings"
    ),
    gate.Check("ae.psnr", 18.6, 18.61, 18.58, True, "ok", 0.4, (3, 3), "Welch", "other seeds"),
    gate.Check("ae.mse_digit.3", 0.02, 0.0201, 0.0203, True, "ok", None, (3, 3), "paired", "same 3 seeds and settings"),
    gate.Check("ae.mse_digit.4", 0.0, 0.0, 0.0, True, "ok", None, (3, 3), "paired", "same 3 seeds and settings"),
    gate.Check("ae.mse_digit.5", 0.03, None, None, False, "missing"),
    gate.Check("pca.mse_digit.1", 0.02, 0.02, 0.02004, True, "ok", None, (1, 1), "floor", "deterministic"),
]


def test_the_table_of_checks_shows_the_headline_and_the_failures():
    assert gate_report.format_checks(CHECKS).splitlines() == [
        "metric           baseline    current   change      limit  test    basis                        result",
        "ae.mse             0.0138    0.01449   +5.00%   0.014007  paired  same 3 seeds and settings    regressed",
        "ae.psnr              18.6      18.61   +0.05%      18.58  Welch   other seeds                  ok",
        "ae.mse_digit.5       0.03          -        -          -  floor                                missing",
        "(and 3 more checks, all passed: floor 1, paired 2; --all lists them)",
        "gate: 4 passed, 2 failed",
    ]
    every = gate_report.format_checks(CHECKS, every=True).splitlines()
    assert len(every) == 1 + len(CHECKS) + 1 and every[-1] == "gate: 4 passed, 2 failed"
    assert every[4].split() == [
        "ae.mse_digit.4",
        "0",
        "0",
        "-",
        "0",
        "paired",
        "same",
        "3",
        "seeds",
        "and",
        "settings",
        "ok",
    ]
