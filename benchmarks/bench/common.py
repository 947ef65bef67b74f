"""What the benchmarks share: the machine they ran on, a copy of the project (tests/services.py's,
the one home of the project copy, the processes and the services tests and benchmarks start), a
timed command, the notebook script's run and the pipeline's, and the lines every section of
RESULTS.md begins with."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from services import copy_project

ROOT = Path(__file__).resolve().parents[2]

NOTEBOOK_MODELS = {
    "pca32": "pca",
    "ae": "ae",
    "deep_ReLU": "deep_relu",
    "deep_Tanh": "deep_tanh",
    "deep_LeakyReLU": "deep_leaky_relu",
}


def machine() -> dict:
    """CPU model, usable cores, memory, GPU (if torch sees one), versions."""
    import torch

    from mnist_codec.machine import cpu_model, cpu_numbers

    cpu = cpu_model()
    family, model = cpu_numbers()  # a VM may name only the vendor's line ("AMD EPYC"): these tell them apart
    cpu = f"{cpu} (family {family}, model {model})"
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_gib, 1),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def copy_tree(dest: Path, overrides: dict, ref: str | None = None) -> None:
    """The project (the working tree, or the commit ``ref``) in a new git repo at ``dest``,
    params.yaml overridden, as a fresh clone of a repository never run here."""
    copy_project(dest, overrides, ref, unrun=True)


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> float:
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def run_notebook(script: Path, mnist: Path, work: Path, env: dict, log: Path) -> dict:
    out_dir = work / "notebook_out"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script), "--mnist", str(mnist), "--out", str(out_dir)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    with open(log, "a") as out:
        out.write(f"\n$ notebook\n{proc.stdout}{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "wall": wall,
        "train": result["seconds"]["train_ae"] + result["seconds"]["train_deep"],
        "seconds": result["seconds"],
        "mse": {NOTEBOOK_MODELS[k]: v for k, v in result["mse"].items() if k in NOTEBOOK_MODELS},
    }


def run_pipeline(repo: Path, env: dict, log: Path, force: bool = True) -> dict:
    dvc = str(Path(sys.executable).parent / "dvc")
    records = repo.parent / f"{repo.name}.timings.jsonl"
    records.unlink(missing_ok=True)
    env = {**env, "PYTHONPATH": str(repo / "src"), "MNIST_CODEC_TIMINGS": str(records)}  # the copy's code
    wall = timed([dvc, "repro", *(["--force"] if force else [])], repo, env, log)
    stages = {}  # each stage's process seconds and its own work by label (what mnist_codec.timing wrote)
    if records.exists():
        for line in records.read_text().splitlines():
            r = json.loads(line)
            stages[r["stage"]] = {"seconds": r["seconds"], "work": r["work"]}
    timings = json.loads((repo / "reports/timings.json").read_text())
    detail = repo / "reports/metrics_detail.json"  # a commit from before it: metrics.json held the detail
    metrics = json.loads((detail if detail.exists() else repo / "reports/metrics.json").read_text())
    seconds = timings["train_seconds"]
    deep = max(v for k, v in seconds.items() if k.startswith("deep_"))  # trained side by side: one wall time
    return {
        "wall": wall,
        "stages": stages,
        "train": seconds["ae"] + deep,
        "train_seconds": seconds,
        "train_device": timings["train_device"],
        "mse": {k: m["mse"]["mean"] for k, m in metrics.items()},
        "mse_summary": {k: m["mse"] for k, m in metrics.items()},
    }


def verdict(ours: float, notebook: list[float]) -> str:
    lo, hi = min(notebook), max(notebook)
    if ours <= lo:
        return "better than every notebook run"
    if ours <= hi:
        return "within the notebook's spread"
    return f"worse: {(ours / hi - 1) * 100:+.1f}% beyond the notebook's worst"


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def machine_line(m: dict) -> str:
    return (
        f"{m['cpu']}, {m['cores']} usable cores, {m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'}; "
        f"torch {m['torch']}, Python {m['python']}"
    )


def section_head(title: str, result: dict) -> list[str]:
    """A benchmark section's title, when and how it was measured, and on what machine."""
    return [
        f"## {title}",
        "",
        f"Measured {result['date']} with `{result['command']}`.",
        "",
        f"- **Machine:** {machine_line(result['machine'])}.",
    ]


def median_rows(a: list[dict], b: list[dict], whole: str, training: str) -> list[str]:
    """The rows both side-by-side tables have: the whole run's and training's medians, A, B, B/A."""
    wa, wb, ta, tb = med(a, "wall"), med(b, "wall"), med(a, "train"), med(b, "train")
    return [
        f"| {whole} | {wa:.1f} s | {wb:.1f} s | **{wb / wa:.2f}** |",
        f"| {training} | {ta:.1f} s | {tb:.1f} s | {tb / ta:.2f} |",
    ]


def rounds_line(a: list[dict], b: list[dict]) -> str:
    return (
        "Every round: "
        + "; ".join(f"A {x['wall']:.1f} s, B {y['wall']:.1f} s" for x, y in zip(a, b, strict=True))
        + "."
    )
