"""``plans``: the default run's deep autoencoders (3 and 9 models) trained for a few epochs one
model per core, in the trainer's stacks (activations sharing stacks), and all in one stack,
in-process, rounds alternating."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from .common import section_head

PLAN_EPOCHS = 2


def bench_plans(args, work: Path, env: dict, log: Path) -> dict:
    """The deep autoencoders of the default run (3 activations, 1 seed and 3 seeds) trained for
    a few epochs on the 60,000 training images under three CPU plans, rounds alternating:
    one model per core (stacks of one), the trainer's plan (about one stack per core, the
    activations sharing stacks), and every model in one stack on every core."""
    import torch

    from mnist_codec.codecs import device, models, train
    from mnist_codec.data import idx, mnist, splits

    x = torch.from_numpy(splits.scale(idx.load_pair(mnist.bundled_dir(), "train")[0]))
    cores = device.usable_cores()
    device.configure_cpu(cores)
    acts = ["relu", "tanh", "leaky_relu"]
    plans = {
        "one model per core": lambda n: n,
        "stacks per core (the trainer's plan)": lambda n: None,
        "one stack on every core": lambda n: 1,
    }
    seconds: dict = {str(n): {p: [] for p in plans} for n in (3, 9)}
    for k in range(args.rounds):
        for n in (3, 9):
            for plan, parts in plans.items():
                print(f"plans: round {k + 1}/{args.rounds}: {n} models: {plan}", flush=True)
                jobs = [
                    train.Job(
                        f"{a}/{r}",
                        models.build({"kind": "deep", "latent_dim": 32, "hidden": [256, 64], "activation": a}),
                        torch.Generator().manual_seed(r),
                    )
                    for r in range(n // len(acts))
                    for a in acts
                ]
                start = time.perf_counter()
                train.fit_many(
                    jobs, x, x[:2000], epochs=PLAN_EPOCHS, batch_size=128, lr=1e-3, stacks_per_group=parts(n)
                )
                seconds[str(n)][plan].append(time.perf_counter() - start)
    return {
        "seconds": seconds,
        "epochs": PLAN_EPOCHS,
        "rounds": args.rounds,
        "cores": cores,
        "stacks": {str(n): device.stack_sizes(n, cores) for n in (3, 9)},
    }


def plans_markdown(result: dict) -> str:
    lines = [
        *section_head("Training several models at once on a CPU", result),
        (
            "- **Work:** the default run's deep autoencoders (784-256-64-32, ReLU, Tanh and LeakyReLU; "
            f"1 seed: 3 models, 3 seeds: 9), {result['epochs']} epochs on the 60,000 training "
            f"images, batch 128, on {result['cores']} cores; {result['rounds']} rounds, the plans "
            "alternating. The trainer's plan cuts n models into stacks of n // cores (3 models: "
            f"{result['stacks']['3']}; 9: {result['stacks']['9']}), the activations sharing stacks, "
            "each stack stepped by one thread, stacks taken epoch by epoch."
        ),
        "",
        "| Plan | 3 models | per model-epoch | 9 models | per model-epoch |",
        "|---|---:|---:|---:|---:|",
    ]
    for plan in result["seconds"]["3"]:
        cells = []
        for n in ("3", "9"):
            t = statistics.median(result["seconds"][n][plan])
            cells.append(f"{t:.1f} s | {t / (int(n) * result['epochs']):.2f} s")
        lines.append(f"| {plan} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


# --- bf16 against fp32 ------------------------------------------------------------------------
