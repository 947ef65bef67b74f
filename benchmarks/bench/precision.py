"""``precision``: bf16 against fp32: the trainer's step in both, per device; where the CPU has
native bf16, the notebook protocol as the notebook script, ``dvc repro --force`` in fp32 and in
bf16 (rounds alternating), and the default run's 3-seed intervals in both; where it has not, the
line the pipeline refuses bf16 with."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import copy_tree, med, run_notebook, run_pipeline, section_head
from .notebook import NOTEBOOK_PROTOCOL

DEEP_RELU = {"kind": "deep", "latent_dim": 32, "hidden": [256, 64], "activation": "relu"}

STEPS, WARM_STEPS = 60, 10

BF16_RATIO_TARGET = 0.5  # the notebook-protocol run in bf16 against the notebook, on a CPU with native bf16


def step_times(device_name: str, rounds: int) -> dict:
    """The deep AE (784-256-64-32, ReLU), batch 128, fused Adam, one stack of one in the trainer's
    own step: milliseconds per step in fp32 and in bf16 (rounds alternating), one CPU thread,
    and each precision's MSE on 2,000 digits after the same steps from the same weights."""
    import torch

    from mnist_codec.codecs import device, models, train
    from mnist_codec.data import idx, mnist, splits

    dev = torch.device(device_name)
    if dev.type == "cpu":
        device.configure_cpu(1)
    x = torch.from_numpy(splits.scale(idx.load_pair(mnist.bundled_dir(), "train")[0][:20_000])).to(dev)
    ms: dict[str, list[float]] = {"fp32": [], "bf16": []}
    mse: dict[str, float] = {}
    for _ in range(rounds):
        for precision in ms:
            torch.manual_seed(0)
            job = train.Job("deep_relu", models.build(DEEP_RELU).to(dev), torch.Generator().manual_seed(0))
            t = train.StackTrainer([job], [[]], [None], x, 128, 1e-3, precision=precision)
            t.new_epoch()
            batches = [t.perm[:, i * 128 : (i + 1) * 128] for i in range(WARM_STEPS + STEPS)]
            for b in batches[:WARM_STEPS]:
                t.step(b)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for b in batches[WARM_STEPS:]:
                t.step(b)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            ms[precision].append((time.perf_counter() - start) / STEPS * 1000)
            mse[precision] = float(t.stack.reconstruction_mse(x[:2000])[0])
    native, what = device.bf16_support(dev)
    return {"device": device.device_label(dev), "native": native, "support": what, "ms": ms, "mse": mse}


def refusal(repo: Path, env: dict) -> str:
    """The line `dvc repro` stops with when the copy asks for bf16 on a machine without it."""
    dvc = str(Path(sys.executable).parent / "dvc")
    proc = subprocess.run(
        [dvc, "repro"], cwd=repo, env={**env, "PYTHONPATH": str(repo / "src")}, capture_output=True, text=True
    )
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "train.precision" in ln]
    if proc.returncode == 0 or not lines:
        raise RuntimeError(f"bf16 was not refused on a machine without native bf16 (exit {proc.returncode})")
    return lines[0].strip()


def bench_precision(args, work: Path, env: dict, log: Path) -> dict:
    """Per step, fp32 against bf16 on every device here; where the CPU has native bf16, the
    notebook protocol (one seed) as the notebook script (A), `dvc repro --force` in fp32 (B) and
    in bf16 (C), rounds alternating, and the default run's 3-seed intervals in both; where it
    has not, the line the pipeline refuses bf16 with."""
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("precision: per-step timings", flush=True)
    result: dict = {"steps": {d: step_times(d, args.rounds) for d in devices}}
    native = result["steps"]["cpu"]["native"]
    bf16 = {"train": {"precision": "bf16"}}
    if not native:
        repo = work / "refused"
        repo.mkdir()
        copy_tree(repo, {**NOTEBOOK_PROTOCOL, "train": {"epochs": 10, "precision": "bf16"}})
        result["refused"] = refusal(repo, env)
        return result
    repos = {}
    for key, overrides in (
        ("fp32", NOTEBOOK_PROTOCOL),
        ("bf16", {**NOTEBOOK_PROTOCOL, **bf16}),
        ("holdout_fp32", {}),
        ("holdout_bf16", bf16),
    ):
        repos[key] = work / key
        repos[key].mkdir()
        copy_tree(repos[key], overrides)
    for key in ("fp32", "bf16"):  # first runs build the DVC cache and the MLflow store alike
        run_pipeline(repos[key], env, log, force=False)
    runs: dict[str, list] = {"notebook": [], "fp32": [], "bf16": []}
    for k in range(args.rounds):
        print(f"precision: round {k + 1}/{args.rounds}: notebook, fp32, bf16", flush=True)
        runs["notebook"].append(run_notebook(args.notebook, args.mnist, work, env, log))
        for key in ("fp32", "bf16"):
            runs[key].append(run_pipeline(repos[key], env, log))
    result["notebook_protocol"] = runs
    print("precision: the default run (holdout, 3 seeds) in fp32 and in bf16", flush=True)
    result["holdout"] = {key: run_pipeline(repos[f"holdout_{key}"], env, log, force=False) for key in ("fp32", "bf16")}
    return result


def precision_markdown(result: dict) -> str:
    from mnist_codec.evaluation.table import display_name

    n_rounds = len(next(iter(result["steps"].values()))["ms"]["fp32"])
    lines = [
        *section_head("bf16 against fp32", result),
        (
            "- **Per step:** the deep AE (784-256-64-32, ReLU), batch 128, fused Adam, the trainer's "
            f"own step, {STEPS} steps after {WARM_STEPS} of warm-up, one CPU thread; {n_rounds} "
            "rounds alternating fp32 and bf16 from the same weights and batches."
        ),
        *(
            f"- **bf16 on {s['device']}:** {'native' if s['native'] else 'not native'}: {s['support']}."
            for s in result["steps"].values()
        ),
        "",
        "| Device | ms per step: fp32 | bf16 | bf16 / fp32 | MSE after the steps: fp32 | bf16 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in result["steps"].values():
        a, b = statistics.median(s["ms"]["fp32"]), statistics.median(s["ms"]["bf16"])
        lines.append(
            f"| {s['device'].split(',')[0]}{'' if s['native'] else ' (emulated bf16)'} | {a:.2f} | {b:.2f} | "
            f"**{b / a:.2f}** | {s['mse']['fp32']:.6f} | {s['mse']['bf16']:.6f} |"
        )
    lines.append("")
    if "refused" in result:
        lines += [
            (
                "This CPU has no native bf16, so bf16 autocast is emulated (its products widened to fp32 and "
                "rounded back on every step), slower than fp32, as the row shows: the pipeline refuses "
                "`train.precision=bf16` here instead of running slowly. `dvc repro` with it stops with:"
            ),
            "",
            f"> {result['refused']}",
            "",
            (
                "The whole-run figures (the notebook protocol in fp32 and bf16 against the notebook; each codec's "
                "3-seed interval in both) come from a machine with AVX512-BF16 or AMX-BF16: run "
                '`make bench BENCH_ARGS="--only precision"` there.'
            ),
            "",
        ]
        return "\n".join(lines)
    runs = result["notebook_protocol"]
    nb, a, b = (med(runs[k], "wall") for k in ("notebook", "fp32", "bf16"))
    ta, tb = med(runs["fp32"], "train"), med(runs["bf16"], "train")
    lines += [
        (
            "Notebook protocol (all 70,000 images, 10 epochs, one seed), rounds alternating the notebook script, "
            "`dvc repro --force` in fp32 and in bf16:"
        ),
        "",
        "| Medians | Notebook | fp32 | bf16 | fp32 / notebook | bf16 / notebook |",
        "|---|---:|---:|---:|---:|---:|",
        f"| Whole run | {nb:.1f} s | {a:.1f} s | {b:.1f} s | {a / nb:.2f} | **{b / nb:.2f}** |",
        f"| Training alone | {med(runs['notebook'], 'train'):.1f} s | {ta:.1f} s | {tb:.1f} s | | |",
        "",
        f"Target on a CPU with native bf16: the whole run at most {BF16_RATIO_TARGET:.2f} of the notebook; "
        f"measured {b / nb:.2f}: " + ("met." if b / nb <= BF16_RATIO_TARGET else "**not met**."),
        "",
        "| Codec | notebook protocol: fp32 | bf16 | default run, 3 seeds: fp32 mean ± 95% CI | bf16 | intervals |",
        "|---|---:|---:|---:|---:|---|",
    ]
    h = result["holdout"]
    for name, s32 in h["fp32"]["mse_summary"].items():
        s16 = h["bf16"]["mse_summary"][name]
        overlap = s16["ci95_low"] <= s32["ci95_high"] and s32["ci95_low"] <= s16["ci95_high"]
        moved = "overlap" if overlap else f"apart: the bf16 mean moves {(s16['mean'] / s32['mean'] - 1) * 100:+.1f}%"
        lines.append(
            f"| {display_name(name)} | {runs['fp32'][-1]['mse'][name]:.6f} | {runs['bf16'][-1]['mse'][name]:.6f} "
            f"| {s32['mean']:.6f} ± {(s32['ci95_high'] - s32['ci95_low']) / 2:.6f} "
            f"| {s16['mean']:.6f} ± {(s16['ci95_high'] - s16['ci95_low']) / 2:.6f} | {moved} |"
        )
    lines.append("")
    return "\n".join(lines)
