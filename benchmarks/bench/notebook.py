"""``notebook``: the reference notebook as one script (A, ``benchmarks/notebook_baseline.py``, on
the bundled MNIST files) against ``dvc repro --force`` (B) under the notebook's protocol
(``data.protocol=notebook``: all 70,000 images, 10 epochs) with one seed, as the notebook trains
each model once; after a first ``dvc repro`` as from a fresh clone (no DVC cache, no MLflow
store yet). With ``--before REF`` the same pipeline at the commit REF runs too (A B B' A B B'
...), and the default run (holdout protocol, 3 seeds) of both, once each from a fresh copy.
Every stage splits its time into its own work and the rest, its fixed cost
(``MNIST_CODEC_TIMINGS``, see ``mnist_codec.timing``): the tables give both, stage by stage,
before and after."""

from __future__ import annotations

import statistics
from pathlib import Path

from .common import copy_tree, med, median_rows, run_notebook, run_pipeline, section_head, verdict

STAGES = ["fetch", "preprocess", "pca", "train_ae", "train_deep", "evaluate", "report"]

FIXED_TARGET_S = 15.0  # the seven stages' fixed costs together, on a CPU

RATIO_TARGET = 0.7  # the notebook-protocol run against the notebook, side by side, on a CPU


def stage_split(runs: list[dict]) -> dict[str, tuple[float, float, float]]:
    """stage -> medians over runs of (process seconds, own work, fixed cost); 'dvc' -> what the
    whole run spent outside the stages' processes (DVC's start, hashing, cache, lock file,
    and each process's exit)."""
    out = {}
    for stage in STAGES:
        rows = [(r["stages"][stage]["seconds"], sum(r["stages"][stage]["work"].values())) for r in runs]
        out[stage] = (
            statistics.median(a for a, _ in rows),
            statistics.median(w for _, w in rows),
            statistics.median(a - w for a, w in rows),
        )
    dvc = statistics.median(r["wall"] - sum(r["stages"][s]["seconds"] for s in STAGES) for r in runs)
    out["dvc"] = (dvc, 0.0, dvc)
    return out


def fixed_total(split: dict) -> float:
    return sum(split[s][2] for s in STAGES)


def work_by_label(runs: list[dict], stage: str) -> dict[str, float]:
    labels = runs[0]["stages"][stage]["work"]
    return {k: statistics.median(r["stages"][stage]["work"].get(k, 0.0) for r in runs) for k in labels}


def stage_table(sides: dict[str, list[dict]]) -> list[str]:
    """Per stage: wall, own work and fixed cost for each side, and the last side's work by label."""
    splits = {side: stage_split(runs) for side, runs in sides.items()}
    last = list(sides)[-1]
    lines = [
        "| Stage | " + " | ".join(f"{side}: wall | work | fixed" for side in sides) + f" | {last}: its work |",
        "|---|" + "---:|---:|---:|" * len(sides) + "---|",
    ]
    for stage in [*STAGES, "dvc"]:
        cells = []
        for side in sides:
            wall, own, fixed = splits[side][stage]
            cells.append(
                f"{wall:.1f} s | | {fixed:.1f} s" if stage == "dvc" else f"{wall:.1f} s | {own:.1f} s | {fixed:.1f} s"
            )
        if stage == "dvc":
            name, labels = "DVC itself (start, hashes, cache, lock; process exits)", ""
        else:
            name = f"`{stage}`"
            labels = ", ".join(f"{k} {v:.1f}" for k, v in work_by_label(sides[last], stage).items())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {labels} |")
    totals = []
    for side, runs in sides.items():
        split = splits[side]
        own = sum(split[s][1] for s in STAGES)
        totals.append(
            f"**{med(runs, 'wall'):.1f} s** | {own:.1f} s | **{fixed_total(split):.1f} s** (+{split['dvc'][2]:.1f})"
        )
    lines.append("| Whole run; fixed: the seven stages' (+ DVC's) | " + " | ".join(totals) + " | |")
    return lines


def mse_unchanged(before: list[dict], after: list[dict]) -> str:
    """Whether every codec's MSE is the same number before and after (to 1e-12)."""
    a, b = before[-1]["mse"], after[-1]["mse"]
    moved = {k: (a[k], b.get(k, float("nan"))) for k in a if k not in b or abs(a[k] - b[k]) > 1e-12 * abs(a[k])}
    if not moved:
        return (
            "every codec's MSE is the same number before and after ("
            + ", ".join(f"{k} {v:.6f}" for k, v in b.items())
            + ")"
        )
    return "**MSE moved:** " + ", ".join(f"{k} {x:.6f} -> {y:.6f}" for k, (x, y) in moved.items())


def notebook_markdown(result: dict) -> str:
    m, a, b = result["machine"], result["notebook"], result["pipeline"]
    nb_wall, pl_wall = med(a, "wall"), med(b, "wall")
    before = result.get("before")
    from mnist_codec.evaluation.table import NOTEBOOK_MSE, display_name

    runs = "notebook (A) and `dvc repro --force` (B) alternating A B A B"
    if before:
        runs = (
            f"the notebook (A), `dvc repro --force` at `{result['before_ref']}` (before) and in this tree "
            f"(after, B) alternating A before B, A before B"
        )
    lines = [
        *section_head("The notebook and the pipeline", result),
        (
            "- **Protocol:** all 70,000 images, 10 epochs, batch 128, Adam 1e-3 (`data.protocol=notebook`), "
            f"one seed as the notebook. {len(a)} rounds: {runs}."
        ),
        "- **Pipeline devices:** " + "; ".join(f"{k}: {v}" for k, v in b[-1]["train_device"].items()),
        "",
        "| Medians | Notebook | Pipeline | Pipeline / notebook |",
        "|---|---:|---:|---:|",
    ]
    if before:
        bw = med(before, "wall")
        lines.append(
            f"| Whole run, before (`{result['before_ref']}`) | {nb_wall:.1f} s | {bw:.1f} s | {bw / nb_wall:.2f} |"
        )
    lines += [
        *median_rows(
            a,
            b,
            "Whole run: notebook script vs `dvc repro --force` (7 stages, MLflow, report)",
            "Training alone: 1-layer AE + three deep AEs",
        ),
        f"| `dvc repro` in a fresh copy (no cache, no MLflow store) | | {result['fresh']['wall']:.1f} s | |",
        "",
        f"Target for the whole run on a CPU: at most {RATIO_TARGET:.2f} of the notebook; measured "
        f"{pl_wall / nb_wall:.2f}: " + ("met." if pl_wall / nb_wall <= RATIO_TARGET else "**not met**."),
        "GPU: "
        + (
            f"{m['gpu']} (this run)."
            if m["gpu"]
            else "none on this machine, so no GPU figures in this run; run the same command on a GPU machine."
        ),
        "",
        "Every round: "
        + "; ".join(
            f"A {x['wall']:.1f} s" + (f", before {z['wall']:.1f} s" if before else "") + f", B {y['wall']:.1f} s"
            for x, y, z in zip(a, b, before or b, strict=True)
        )
        + ".",
        "The notebook trains its 1-layer AE for 11 epochs (1, then 10 more); the pipeline for 10.",
        "",
    ]
    if all(r.get("stages") for r in b):
        sides = {"before": before, "after": b} if before and all(r.get("stages") for r in before) else {"after": b}
        split = stage_split(b)
        lines += [
            "### Where the time goes, stage by stage (notebook protocol)",
            "",
            (
                "Wall: the stage's process, from the interpreter's start to its last output. Work: what the "
                "stage is for (a fit, training, scoring, figures), timed inside it. Fixed: the rest "
                "(interpreter, imports, params, MLflow's store, logging and registering models, writing "
                "files). Medians over the rounds."
            ),
            "",
            *stage_table(sides),
            "",
            f"Target: the seven stages' fixed costs together at most {FIXED_TARGET_S:.0f} s; measured "
            f"{fixed_total(split):.1f} s: "
            + ("met." if fixed_total(split) <= FIXED_TARGET_S else "**not met**.")
            + (f" Before: {fixed_total(stage_split(before)):.1f} s." if len(sides) == 2 else ""),
        ]
        if len(sides) == 2:
            lines.append(f"Under the notebook protocol {mse_unchanged(before, b)}.")
        lines.append("")
        holdout, holdout_before = result.get("holdout"), result.get("holdout_before")
        if holdout:
            hs = {"before": holdout_before, "after": holdout} if holdout_before else {"after": holdout}
            lines += [
                "### The default run, stage by stage (holdout protocol, 3 seeds)",
                "",
                (
                    "One `dvc repro` in a fresh copy of each (as a first `make repro` after cloning: the MLflow "
                    "store is created in it), run one after the other."
                ),
                "",
                *stage_table(hs),
                "",
            ]
            if holdout_before:
                lines += [f"Under the holdout protocol {mse_unchanged(holdout_before, holdout)}.", ""]
    lines += [
        "Reconstruction MSE (per pixel, all 70,000 images):",
        "",
        "| Model | Pipeline | Notebook, this run | Notebook, published | Verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for name, ours in b[-1]["mse"].items():
        runs = [r["mse"][name] for r in a if name in r["mse"]]
        published = NOTEBOOK_MSE.get(name)
        seen = runs + ([published] if published else [])
        lines.append(
            f"| {display_name(name)} | {ours:.6f} | {', '.join(f'{v:.6f}' for v in runs)} | "
            f"{published if published else ''} | {verdict(ours, seen) if seen else ''} |"
        )
    lines += [
        "",
        (
            "The notebook is not seeded: its runs differ from each other and from its published figures; "
            "that spread is the noise the verdict uses. The pipeline is seeded and gives the same numbers "
            "on every run on one machine."
        ),
        "",
    ]
    return "\n".join(lines)


NOTEBOOK_PROTOCOL = {"data": {"protocol": "notebook"}, "train": {"epochs": 10}, "n_seeds": 1}


def bench_notebook(args, work: Path, env: dict, log: Path) -> dict:
    sides = {"after": None, **({"before": args.before} if args.before else {})}
    repos = {}
    for side, ref in sides.items():
        for protocol, overrides in (("notebook", NOTEBOOK_PROTOCOL), ("holdout", {})):
            repos[side, protocol] = work / f"{protocol}-{side}"
            repos[side, protocol].mkdir()
            copy_tree(repos[side, protocol], overrides, ref)
    fresh = {}
    for side in sides:
        print(f"notebook: {side}: fresh copy: dvc repro", flush=True)
        fresh[side] = run_pipeline(repos[side, "notebook"], env, log, force=False)
    notebook, pipeline = [], {side: [] for side in sides}
    for k in range(args.rounds):
        print(f"notebook: round {k + 1}/{args.rounds}: notebook", flush=True)
        notebook.append(run_notebook(args.notebook, args.mnist, work, env, log))
        for side in sides:
            print(f"notebook: round {k + 1}/{args.rounds}: {side}: dvc repro --force", flush=True)
            pipeline[side].append(run_pipeline(repos[side, "notebook"], env, log))
    holdout = {}
    for side in sides:  # the default run, as a user's first `make repro` in a fresh clone
        print(f"notebook: {side}: the default run (holdout, 3 seeds) in a fresh copy: dvc repro", flush=True)
        holdout[side] = [run_pipeline(repos[side, "holdout"], env, log, force=False)]
    return {
        "fresh": fresh["after"],
        "notebook": notebook,
        "pipeline": pipeline["after"],
        "before_ref": args.before,
        "before": pipeline.get("before"),
        "holdout": holdout["after"],
        "holdout_before": holdout.get("before"),
    }
