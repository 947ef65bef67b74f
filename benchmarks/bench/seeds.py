"""``seeds``: the default run (``dvc repro --force``, holdout protocol) with ``n_seeds: 1`` (A)
against the default ``n_seeds: 3`` (B), each in its own copy: what the intervals cost."""

from __future__ import annotations

from pathlib import Path

from .common import copy_tree, med, median_rows, rounds_line, run_pipeline, section_head


def seeds_markdown(result: dict) -> str:
    a, b = result["one"], result["three"]
    one, three = med(a, "wall"), med(b, "wall")
    from mnist_codec.evaluation.table import display_name

    lines = [
        *section_head("What the intervals cost: 1 seed against 3", result),
        (
            "- **Run:** the default `dvc repro --force` (holdout protocol, 10 epochs), with `n_seeds: "
            f"1` (A) and the default `n_seeds: 3` (B), {len(a)} rounds alternating A B A B."
        ),
        "- **Training plan, 3 seeds:** " + "; ".join(f"{k}: {v}" for k, v in b[-1]["train_device"].items()),
        "",
        "| Medians | 1 seed | 3 seeds | 3 seeds / 1 seed |",
        "|---|---:|---:|---:|",
        *median_rows(
            a, b, "Whole run (`dvc repro --force`: 7 stages, MLflow, report)", "Training alone (AE + deep AEs)"
        ),
        "",
        f"Target: at most 2.00; measured {three / one:.2f}: " + ("met." if three / one <= 2 else "**not met**."),
        "",
        rounds_line(a, b),
        "",
        "| Codec | 1 seed: MSE | 3 seeds: the first seed's MSE | 3 seeds: mean ± 95% CI |",
        "|---|---:|---:|---:|",
    ]
    for name, s in b[-1]["mse_summary"].items():
        half = (s["ci95_high"] - s["ci95_low"]) / 2
        lines.append(
            f"| {display_name(name)} | {a[-1]['mse'][name]:.6f} | {s['per_seed'][0]:.6f} "
            f"| {s['mean']:.6f} ± {half:.6f} |"
        )
    lines += [
        "",
        "The first seed of a 3-seed run is the 1-seed run's model, trained in another stack: the same number.",
        "",
    ]
    return "\n".join(lines)


def bench_seeds(args, work: Path, env: dict, log: Path) -> dict:
    repos = {}
    for key, n in (("one", 1), ("three", 3)):
        repos[key] = work / f"seeds-{n}"
        repos[key].mkdir()
        copy_tree(repos[key], {"n_seeds": n})  # the first round runs each from scratch, alike
    runs: dict[str, list] = {"one": [], "three": []}
    for k in range(args.rounds):
        for key in ("one", "three"):
            print(
                f"seeds: round {k + 1}/{args.rounds}: n_seeds={1 if key == 'one' else 3}: dvc repro --force", flush=True
            )
            runs[key].append(run_pipeline(repos[key], env, log))
    return runs
