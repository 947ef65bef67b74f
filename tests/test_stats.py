"""The statistics behind every ± in the table, `mse_ci95` in metrics.json and the gate's Welch test.

Each rule is stated for all inputs where it holds for all (Hypothesis), and held against
scipy's own implementation where scipy has one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from mnist_codec.evaluation.stats import half_width, is_summary, one_sided_p, overlaps, ranks, summarize, welch

# per-pixel MSEs and PSNRs alike: positive, finite, of any sensible scale
VALUES = st.lists(st.floats(1e-4, 100.0), min_size=2, max_size=12)
FAST = settings(max_examples=60, deadline=None)


def interval(low: float, high: float, n: int = 3) -> dict:
    mean = (low + high) / 2
    return {"mean": mean, "std": high - low, "n": n, "ci95_low": low, "ci95_high": high}


@FAST
@given(VALUES)
def test_the_interval_is_students_t_with_n_minus_1_degrees_of_freedom(values):
    s = summarize(values)
    v = np.asarray(values)
    sem = v.std(ddof=1) / math.sqrt(len(v))
    low, high = scipy_stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=sem) if sem > 0 else (v.mean(),) * 2
    assert s["n"] == len(values) and s["per_seed"] == [float(x) for x in values]
    assert s["mean"] == pytest.approx(v.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(v.std(ddof=1), rel=1e-9, abs=1e-15)
    assert s["ci95_low"] == pytest.approx(low, rel=1e-9, abs=1e-12)
    assert s["ci95_high"] == pytest.approx(high, rel=1e-9, abs=1e-12)
    assert s["ci95_low"] <= s["mean"] <= s["ci95_high"]


@FAST
@given(VALUES, st.floats(1.5, 10.0))
def test_the_interval_widens_with_the_spread(values, k):
    s = summarize(values)
    mean = float(np.mean(values))
    wider = summarize([mean + k * (x - mean) for x in values])
    if s["std"] > 1e-9 * mean:
        assert half_width(wider) > half_width(s)
    assert half_width(wider) == pytest.approx(k * half_width(s), rel=1e-6, abs=1e-12)


def test_two_seeds_give_a_t_interval_with_one_degree_of_freedom():
    s = summarize([1.0, 3.0])  # mean 2, std sqrt(2), sem 1: half-width t(0.975, 1) = 12.7062...
    assert (s["mean"], s["std"], s["n"]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert half_width(s) == pytest.approx(12.706204736174698, rel=1e-12)
    assert (s["ci95_low"], s["ci95_high"]) == (pytest.approx(2 - 12.706204736174698), pytest.approx(2 + 12.70620473617))


def test_a_lower_confidence_gives_a_narrower_interval():
    values = [0.010, 0.011, 0.0125, 0.0098]
    assert half_width(summarize(values, confidence=0.90)) < half_width(summarize(values))
    sem = np.std(values, ddof=1) / 2
    assert half_width(summarize(values, confidence=0.90)) == pytest.approx(scipy_stats.t.ppf(0.95, 3) * sem)


def test_one_value_or_identical_values_have_no_spread():
    one = summarize([0.0172])
    assert (one["std"], one["ci95_low"], one["ci95_high"], one["n"]) == (0.0, 0.0172, 0.0172, 1)
    same = summarize([0.5, 0.5, 0.5])
    assert (same["std"], half_width(same)) == (0.0, 0.0)


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")], [float("inf")], [[0.1, 0.2]]])
def test_no_values_or_a_non_finite_one_is_refused(bad):
    with pytest.raises(ValueError, match="summarize needs one or more finite values"):
        summarize(bad)


def test_a_summary_is_a_mapping_with_mean_std_and_n():
    assert is_summary({"mean": 1.0, "std": 0.0, "n": 1})
    assert is_summary(summarize([1.0, 2.0]))
    assert not is_summary({"mean": 1.0, "std": 0.0})
    assert not is_summary({"std": 0.0, "n": 1})
    assert not is_summary({"mean": 1.0, "n": 1})
    assert not is_summary([1.0, 0.0, 1])
    assert not is_summary(0.5)


def test_touching_intervals_overlap_and_separated_ones_do_not():
    a, touching, apart = interval(1.0, 2.0), interval(2.0, 3.0), interval(2.0 + 1e-12, 3.0)
    assert overlaps(a, touching) and overlaps(touching, a)
    assert not overlaps(a, apart) and not overlaps(apart, a)
    inside = interval(1.2, 1.8)
    assert overlaps(a, inside) and overlaps(inside, a)


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, on near-equal values
@FAST
@given(VALUES, VALUES)
def test_welch_matches_scipy(a, b):
    sa, sb = summarize(a), summarize(b)
    se, df = welch(sa, sb)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    assert se == pytest.approx(math.sqrt(va + vb), rel=1e-9, abs=1e-15)
    if va + vb > 1e-20:
        ref = scipy_stats.ttest_ind(b, a, equal_var=False)
        assert df == pytest.approx(ref.df, rel=1e-6)


def test_welch_without_spread():
    none, spread = summarize([2.0, 2.0, 2.0]), summarize([1.0, 2.0, 3.0, 4.0])
    assert welch(none, summarize([5.0, 5.0])) == (0.0, 3.0)  # no spread on either side: nb + nc - 2
    se, df = welch(none, spread)  # one side without spread: all the error and degrees of freedom are the other's
    assert se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2) and df == pytest.approx(3.0)
    se, df = welch(spread, none)
    assert se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2) and df == pytest.approx(3.0)


@FAST
@given(VALUES, VALUES, st.floats(-5.0, 5.0, allow_subnormal=False))
def test_one_sided_p_matches_scipy(a, b, worse_by):
    sa, sb = summarize(a), summarize(b)
    if welch(sa, sb)[0] < 1e-9:
        return
    ref = scipy_stats.ttest_ind_from_stats(
        worse_by, np.std(b, ddof=1), len(b), 0.0, np.std(a, ddof=1), len(a), equal_var=False, alternative="greater"
    )
    assert one_sided_p(worse_by, sa, sb) == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)


def test_one_sided_p_falls_as_the_worsening_grows():
    a, b = summarize([1.0, 1.2, 0.9]), summarize([1.1, 1.0, 1.3])
    ps = [one_sided_p(w, a, b) for w in (-0.5, 0.0, 0.1, 0.3, 1.0)]
    assert ps == sorted(ps, reverse=True) and ps[1] == pytest.approx(0.5)
    assert ps[0] > 0.5 > ps[2]


def test_without_spread_any_worsening_is_certain_and_none_is_not():
    flat = summarize([1.0, 1.0])
    assert one_sided_p(1e-9, flat, flat) == 0.0
    assert one_sided_p(0.0, flat, flat) == 1.0
    assert one_sided_p(-1.0, flat, flat) == 1.0


def test_ranks_order_by_separated_intervals_and_name_the_overlapping():
    table = {
        "best": interval(1.0, 2.0),
        "touching": interval(2.0, 3.0),  # touches best: not separated, same rank
        "worst": interval(3.5, 4.0),
    }
    assert ranks(table) == {"best": (1, ["touching"]), "touching": (1, ["best"]), "worst": (3, [])}


def test_a_codec_alone_ranks_first_and_equal_intervals_share_a_rank():
    assert ranks({"pca": interval(1.0, 1.0, n=1)}) == {"pca": (1, [])}
    same = ranks({"a": interval(1.0, 1.0, n=1), "b": interval(1.0, 1.0, n=1)})
    assert same == {"a": (1, ["b"]), "b": (1, ["a"])}


def test_values_are_summarized_in_float64_whatever_their_type():
    single = np.array([0.1, 0.2, 0.4], dtype=np.float32)
    s = summarize(single)
    wide = single.astype(np.float64)
    assert s["mean"] == wide.mean() and s["std"] == wide.std(ddof=1)
    assert s["per_seed"] == [float(x) for x in wide]
