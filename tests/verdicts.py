"""Verdicts built in memory for the gate's tests (tests/test_verdict.py, tests/test_gate_report.py):
three codecs' results around the notebook's MSE, the comparisons the gate makes of them, and a
verdict over them -- each decision held by a test of milliseconds, without git."""

from __future__ import annotations

from pathlib import Path

from mnist_codec.evaluation.acceptance import Acceptance, Accepted, Regression
from mnist_codec.evaluation.gate import Rule, compare
from mnist_codec.evaluation.history import Results, Revision
from mnist_codec.evaluation.stats import summarize
from mnist_codec.evaluation.verdict import Comparison, Verdict

RULES = [
    Rule("pca.mse", "lower", rel_floor=0.002),
    Rule("*.mse", "lower", rel_floor=0.005, paired_rel=0.015),
    Rule("*.psnr", "higher", abs_floor=0.02),
    Rule("*.code_size", "equal"),
]
SEEDS = [1, 2, 3]


def codec(mse: list[float], psnr: float = 20.0) -> dict:
    seeds = SEEDS[: len(mse)] if len(mse) > 1 else [1]
    return {
        "mse": summarize(mse),
        "psnr": summarize([psnr] * len(mse)),
        "code_size": 32,
        "seeds": seeds,
        "settings": {"train": {"epochs": 10}},
    }


def content(ae: float = 1.0, deep: float = 1.0, pca: float = 1.0, drop: str = "", ae_psnr: float = 20.0) -> dict:
    out = {
        "pca": codec([0.0172 * pca]),
        "ae": codec([0.0138 * ae, 0.0140 * ae, 0.0136 * ae], ae_psnr),
        "deep_tanh": codec([0.0110 * deep, 0.0112 * deep, 0.0108 * deep]),
    }
    out.pop(drop, None)
    return out


def results(label: str, data: dict, sha: str | None = None) -> Results:
    return Results(f"{label} {sha[:7]}" if sha else label, data, Revision(label, sha) if sha else None)


BASE = results("base", content(), "b" * 40)


def comparison(question: str, reference: Results | None, current: Results, how: str = "how") -> Comparison:
    checks = () if reference is None else tuple(compare(reference.content, current.content, RULES))
    return Comparison(question, reference, current, checks, how)


def judged(head: Results, fresh: dict | None = None, accepted: Accepted | None = None, drift=None) -> Verdict:
    comps = []
    if fresh is not None:
        comps.append(comparison("reproduce", head, results("fresh run", fresh), "the workspace's reports/"))
    comps.append(comparison("regress", BASE, head, "the results before the last change to them, bbbbbbb"))
    if drift is not None:
        comps.append(drift)
    return Verdict(comps, accepted or Accepted(Path("metrics_accepted.yaml")), head)


def accepting(head: Results, *metrics: str, base: str | None = None, line: int = 10) -> Accepted:
    regs = tuple(Regression(m, base or BASE.digest, "+5.00%", line + 4 + i) for i, m in enumerate(metrics))
    return Accepted(Path("metrics_accepted.yaml"), (Acceptance(head.digest, "2026-12-07", "slower, kept", regs, line),))
