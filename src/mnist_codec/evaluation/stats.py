"""Statistics over seeds: summaries with 95% intervals, Welch's test, interval separation.

A codec trained on n seeds gives n values of a metric. Its summary is the mean, the
sample standard deviation and the 95% confidence interval of the mean from Student's t
with n - 1 degrees of freedom: if the codec were trained again on n new seeds, intervals
made this way would cover the true mean 95 times in 100. A deterministic codec (PCA) has
n = 1 and its interval is the point itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
STAT_KEYS = ("mean", "std", "n")  # a metrics.json entry with these keys is a summary over seeds


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom.

    ``scipy.special.stdtrit`` is the function ``scipy.stats.t.ppf`` evaluates, without the
    second of CPU that importing ``scipy.stats`` costs every stage that summarizes seeds."""
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def summarize(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """{'mean', 'std', 'n', 'ci95_low', 'ci95_high', 'per_seed'} of one metric over seeds."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"summarize needs one or more finite values, got {values!r}")
    n, mean = len(v), float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n) if n > 1 else 0.0
    return {
        "mean": mean,
        "std": std,
        "n": n,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "per_seed": [float(x) for x in v],
    }


def is_summary(value: object) -> bool:
    return isinstance(value, dict) and all(k in value for k in STAT_KEYS)


def half_width(s: dict) -> float:
    return (s["ci95_high"] - s["ci95_low"]) / 2


def overlaps(a: dict, b: dict) -> bool:
    """Whether two summaries' 95% intervals share any value (then they are not separated)."""
    return a["ci95_low"] <= b["ci95_high"] and b["ci95_low"] <= a["ci95_high"]


def welch(base: dict, current: dict) -> tuple[float, float]:
    """(standard error of current mean - base mean, Welch-Satterthwaite degrees of freedom).

    What the gate's margin is made of (scipy's test gives the p-value, not these). Each side
    needs n >= 2 (its own spread); a side with std 0 adds nothing to the error.
    """
    vb, vc = base["std"] ** 2 / base["n"], current["std"] ** 2 / current["n"]
    se = math.sqrt(vb + vc)
    if se == 0:
        return 0.0, float(base["n"] + current["n"] - 2)
    df = (vb + vc) ** 2 / (vb**2 / (base["n"] - 1) + vc**2 / (current["n"] - 1))
    return se, df


def one_sided_p(worse_by: float, base: dict, current: dict) -> float:
    """P(a difference at least ``worse_by`` in the bad direction | no real change): Welch's
    t-test, one-sided, from the two summaries (scipy's ``ttest_ind_from_stats``)."""
    from scipy.stats import ttest_ind_from_stats

    se, _ = welch(base, current)
    if se == 0:  # no spread on either side: any worsening is certain
        return 0.0 if worse_by > 0 else 1.0
    test = ttest_ind_from_stats(
        worse_by, current["std"], current["n"], 0.0, base["std"], base["n"], equal_var=False, alternative="greater"
    )
    return float(test.pvalue)


def ranks(summaries: dict[str, dict]) -> dict[str, tuple[int, list[str]]]:
    """name -> (rank, names it is not separated from), lower mean first.

    A codec's rank is 1 + the number of codecs whose whole interval lies below its own
    (clearly better); codecs whose intervals overlap are not ranked against each other
    and may share a rank.
    """
    out = {}
    for name, s in summaries.items():
        better = sum(1 for other, o in summaries.items() if other != name and o["ci95_high"] < s["ci95_low"])
        tied = [other for other, o in summaries.items() if other != name and overlaps(s, o)]
        out[name] = (1 + better, tied)
    return out
