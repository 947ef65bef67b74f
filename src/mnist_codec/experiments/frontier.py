"""The frontier codec: how good a 32-number code gets, with nothing chosen on the test images.

``make frontier`` (``mnist-codec frontier``) runs DVC experiments and nothing else:

1. each candidate's settings (:data:`CANDIDATES`) under the validation protocol, on one seed:
   ``dvc exp run --temp -n frontier-val-<name> -S data.protocol=validation -S n_seeds=1 <overrides>``
   (fit on the first 50,000 training images, scored on the last 10,000);
2. the candidate whose best codec has the lowest validation MSE is run once under the holdout
   protocol on the default seeds: ``dvc exp run --temp -n frontier <overrides>``;
3. ``reports/frontier.json`` records the command, each run's exact DVC command line, the
   validation scores, the chosen codec's test MSE (mean, 95% interval, per seed), the wall
   times and the machine.

Every run is an ordinary experiment of the pipeline: its models are MLflow runs and registered
versions like any other, and ``dvc exp show`` lists them.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..data import N_PIXELS
from ..errors import DataError

log = logging.getLogger(__name__)

TARGET_MSE = 0.0034  # per pixel on the 10,000 test images: a 32-number code past Hinton & Salakhutdinov (2006)
NAME = "frontier"
VAL_PREFIX = "frontier-val-"
COMMAND = "make frontier"  # what a user types in a fresh clone to reproduce the record
METRICS = "reports/metrics.json"

# name -> `-S` overrides, on top of params.yaml. Each is a params change away from the notebook.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "conv": (
        "deep.arch=conv",
        "deep.channels=[32,64]",
        "activation=leaky_relu",
        "train.epochs=40",
        "train.schedule=onecycle",
        "train.lr=3.0e-3",
    ),
    "wide-mlp": (
        "deep.hidden=[1000,500,250]",
        "activation=leaky_relu",
        "train.epochs=40",
        "train.schedule=onecycle",
        "train.lr=3.0e-3",
    ),
}
VALIDATION = ("data.protocol=validation", "n_seeds=1")


@dataclass(frozen=True)
class Result:
    """One finished experiment: its best codec and that codec's MSE summary."""

    experiment: str
    rev: str  # the experiment's commit
    codec: str
    mse: dict  # mean, ci95_low, ci95_high, n, per_seed ... as in metrics.json
    params: dict  # the experiment's params.yaml, flat: 'latent_dim', 'data.protocol', ...


def exp_run_command(name: str, overrides: tuple[str, ...]) -> list[str]:
    """The DVC command line of one run: a temporary workspace, the named experiment."""
    return ["dvc", "exp", "run", "--temp", "-n", name, *[a for o in overrides for a in ("-S", o)]]


def best_deep_codec(mse: dict[str, dict], exclude: tuple[str, ...] = ("pca", "ae")) -> str:
    """The deep codec with the lowest mean MSE; ``mse``: codec -> its MSE summary."""
    deep = {c: m["mean"] for c, m in mse.items() if c not in exclude}
    if not deep:
        raise DataError(f"{METRICS}: no deep codec among {sorted(mse)}")
    return min(deep, key=lambda c: deep[c])


def find(rows: list[dict], name: str) -> Result:
    """The latest finished experiment called ``name`` in ``dvc.api.exp_show`` rows."""
    from . import exps

    exp = exps.latest_finished(rows).get(name)
    if exp is None:
        raise DataError(f"no finished experiment named {name!r} with {METRICS} (see `dvc exp show`)")
    codec = best_deep_codec(exp.mse)
    return Result(name, exp.rev, codec, exp.mse[codec], exp.params)


def committed_metrics(repo: Path, rev: str) -> dict:
    """An experiment's detail file (metrics_detail.json) from its commit: what ``dvc exp show``
    does not show, such as each seed's MSE."""
    import json

    from .exps import DETAIL, committed_file

    return json.loads(committed_file(repo, rev, DETAIL))


def choose(scores: dict[str, Result]) -> str:
    """The candidate whose best codec has the lowest validation MSE."""
    return min(scores, key=lambda name: scores[name].mse["mean"])


def measured(final: Result, mse: dict, target: float) -> dict:
    """What a record says of the codec measured on the test images (``mse``: its MSE summary)."""
    from ..evaluation.table import display_name

    return {
        "codec": final.codec,
        "codec_name": display_name(final.codec),
        "code_size": int(final.params["latent_dim"]),
        "protocol": final.params["data.protocol"],
        "test_mse": mse["mean"],
        "test_mse_ci95": [mse["ci95_low"], mse["ci95_high"]],
        "test_mse_per_seed": mse["per_seed"],
        "n_seeds": mse["n"],
        "target_mse": target,
        "meets_target": mse["mean"] <= target,
    }


def record(
    candidates: dict[str, tuple[str, ...]],
    scores: dict[str, Result],
    chosen: str,
    final: Result,
    seconds: dict[str, float],
    machine: str,
    extra: tuple[str, ...] = (),
) -> dict:
    """reports/frontier.json: what was run, what it scored, on what, in how long."""
    return {
        "command": COMMAND,
        "experiment_command": shlex.join(exp_run_command(NAME, (*candidates[chosen], *extra))),
        **measured(final, final.mse, TARGET_MSE),
        "selection": {
            "protocol": "validation",
            "rule": "the candidate whose best deep codec has the lowest validation MSE (one seed each)",
            "chosen": chosen,
            "candidates": [
                {
                    "name": n,
                    "experiment": scores[n].experiment,
                    "codec": scores[n].codec,
                    "validation_mse": scores[n].mse["mean"],
                    "command": shlex.join(exp_run_command(VAL_PREFIX + n, (*VALIDATION, *o, *extra))),
                }
                for n, o in candidates.items()
            ],
        },
        "wall_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "device": machine,
    }


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60)} s" if seconds >= 60 else f"{seconds:.0f} s"


def markdown(rec: dict) -> str:
    """The docs' account of a frontier record: the number, how it was chosen, what it cost
    (a record of ``make tune``, whose selection is a search, or of ``make frontier``)."""
    if "search" in rec["selection"]:
        return _tuned_markdown(rec)
    low, high = rec["test_mse_ci95"]
    half = (high - low) / 2
    verdict = "met" if rec["meets_target"] else "not met"
    picks = "; ".join(f"{c['name']} ({c['codec']}) {c['validation_mse']:.6f}" for c in rec["selection"]["candidates"])
    wall = rec["wall_seconds"]
    return (
        f"**{rec['codec_name']}**, {rec['code_size']} numbers per digit: test MSE per pixel "
        f"**{rec['test_mse']:.6f} ± {half:.6f}** (mean ± half the 95% interval over {rec['n_seeds']} seeds; "
        f"per seed {', '.join(f'{v:.6f}' for v in rec['test_mse_per_seed'])}), on the 10,000 test images "
        f"({rec['protocol']} protocol). Target {rec['target_mse']}: {verdict}.\n\n"
        f"Chosen on the validation split (the last 10,000 training images, one seed each; lowest wins): "
        f"{picks}. The test images were used once, for the chosen settings.\n\n"
        f"`{rec['command']}` took {_minutes(wall['total'])} on {rec['device'].replace('cpu:', 'a CPU: ')} "
        f"(validation runs and the test run, one after the other; the test run alone "
        f"{_minutes(wall['test run'])}). The test run on its own (after `make install`, "
        "with `.venv/bin` on `PATH`):\n\n"
        f"```bash\n{rec['experiment_command']}\n```\n"
    )


def _tuned_markdown(rec: dict) -> str:
    low, high = rec["test_mse_ci95"]
    s = rec["selection"]["search"]
    w = s["winner"]
    searched = ", ".join(f"`{k}={v}`" for k, v in w["searched"].items())
    per_seed = ", ".join(f"{v:.6f}" for v in rec["test_mse_per_seed"])
    lines = [
        (
            f"**{rec['codec_name']}**, {rec['code_size']} numbers per digit: test MSE per pixel "
            f"**{rec['test_mse']:.6f} ± {(high - low) / 2:.6f}** ({rec['test_mse'] * N_PIXELS:.2f} summed over an "
            f"image's {N_PIXELS} pixels; mean ± half the 95% interval over {rec['n_seeds']} seeds; "
            f"per seed {per_seed}), "
            "on the 10,000 test images "
            f"({rec['protocol']} protocol). Target {rec['target_mse']}: {'met' if rec['meets_target'] else 'not met'}."
        ),
        "",
        f"Found by a search on the validation split (the last 10,000 training images, one seed a trial): "
        f"{s['trials']} trials of Optuna's TPE sampler over `{s['file']}`, {s['ran_every_epoch']} of them trained "
        f"all {s['asha']['max_epochs']} epochs and {s['asha_stopped']} stopped early by ASHA"
        + (f", {s['cut_by_time']} cut by the time budget" if s["cut_by_time"] else "")
        + f". The winner (trial {w['optuna_trial']}, validation MSE {w['validation_mse']:.6f}): {searched}. "
        "The test images were used once, for the winner.",
        "",
    ]
    old = rec.get("replaces")
    if old:
        olow, ohigh = old["test_mse_ci95"]
        lines += [
            f"It replaces {old['codec_name']} from `{old['command']}`: {old['test_mse']:.6f} "
            f"± {(ohigh - olow) / 2:.6f} over {old['n_seeds']} seeds; the new 95% interval lies "
            + ("wholly below the old one." if rec["interval_below_replaced"] else "**not** wholly below the old one."),
            "",
        ]
    wall = rec["wall_seconds"]
    precision = rec.get("precision", {})
    lines += [
        (
            f"`{rec['command']}` searched for {_minutes(wall['search'])} and ran the test run in "
            f"{_minutes(wall['test run'])} on {rec['device'].replace('cpu:', 'a CPU: ')} (search in "
            f"{precision.get('search', 'fp32')}, test run in {precision.get('test run', 'fp32')}). The test run on "
            "its own (after `make install`, with `.venv/bin` on `PATH`):"
        ),
        "",
        f"```bash\n{rec['experiment_command']}\n```",
        "",
    ]
    return "\n".join(lines)


def run_experiment(repo: Path, name: str, overrides: tuple[str, ...]) -> float:
    """Run one experiment (an earlier one of that name is removed first); its wall seconds."""
    subprocess.run(["dvc", "exp", "remove", name], cwd=repo, capture_output=True, timeout=600)
    cmd = exp_run_command(name, overrides)
    log.info("frontier: %s", shlex.join(cmd))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo)
    if proc.returncode != 0:
        raise DataError(f"{shlex.join(cmd)} failed (exit {proc.returncode}); its output is above")
    return time.perf_counter() - start


def run(
    repo: Path, out: Path, candidates: dict[str, tuple[str, ...]] = CANDIDATES, extra: tuple[str, ...] = ()
) -> dict:
    """Select on the validation split, measure the choice on the test images, write ``out``.

    ``extra`` overrides are added to every run (a small profile for tests)."""
    from .. import fileio
    from ..codecs.device import machine_name
    from .exps import show as exp_show

    seconds: dict[str, float] = {}
    for name, overrides in candidates.items():
        seconds[f"validation {name}"] = run_experiment(repo, VAL_PREFIX + name, (*VALIDATION, *overrides, *extra))
    shown = exp_show(repo)
    scores = {name: find(shown, VAL_PREFIX + name) for name in candidates}
    chosen = choose(scores)
    for name, r in scores.items():
        log.info(
            f"frontier: validation MSE of {name} ({r.codec}): {r.mse['mean']:.6f}"
            + (" <- chosen" if name == chosen else "")
        )
    seconds["test run"] = run_experiment(repo, NAME, (*candidates[chosen], *extra))
    seconds["total"] = sum(seconds.values())
    final = find(exp_show(repo), NAME)
    final = replace(final, mse=committed_metrics(repo, final.rev)[final.codec]["mse"])
    rec = record(candidates, scores, chosen, final, seconds, machine_name(), extra)
    fileio.write_json(out, rec)
    log.info(
        f"frontier: {rec['codec_name']} test MSE {final.mse['mean']:.6f} "
        f"[{final.mse['ci95_low']:.6f}, {final.mse['ci95_high']:.6f}] over {final.mse['n']} seeds "
        f"(target {TARGET_MSE}: {'met' if rec['meets_target'] else 'not met'}); {out}"
    )
    return rec
