"""Time the mnist-codec pipeline side by side with what it is measured against, on one machine.

Two benchmarks, each in temporary copies of this working tree, each alternating A B A B so
that a busy machine slows both sides alike:

* ``notebook``: the reference notebook as one script (A, ``benchmarks/notebook_baseline.py``,
  on the bundled MNIST files) against ``dvc repro --force`` (B)
  under the notebook's protocol (``data.protocol=notebook``: all 70,000 images, 10 epochs)
  with one seed, as the notebook trains each model once; after a first ``dvc repro`` as
  from a fresh clone (no DVC cache, no MLflow store yet). With ``--before REF`` the same
  pipeline at the commit REF runs too (A B B' A B B' ...), and the default run (holdout
  protocol, 3 seeds) of both, once each from a fresh copy. Every stage splits its time into
  its own work and the rest, its fixed cost (``MNIST_CODEC_TIMINGS``, see
  ``mnist_codec.timing``): the tables give both, stage by stage, before and after.
* ``seeds``: the default run (``dvc repro --force``, holdout protocol) with ``n_seeds: 1``
  (A) against the default ``n_seeds: 3`` (B), each in its own copy: what the intervals cost.

* ``precision``: bf16 against fp32: the trainer's step in both, per device; where the CPU has
  native bf16, the notebook protocol as the notebook script, ``dvc repro --force`` in fp32 and
  in bf16 (rounds alternating), and the default run's 3-seed intervals in both; where it has
  not, the line the pipeline refuses bf16 with.

* ``plans``: the default run's deep autoencoders (3 and 9 models) trained for a few epochs
  one model per core, in the trainer's stacks (activations sharing stacks), and all in one
  stack, in-process, rounds alternating.

* ``cluster``: the sweep on a Ray cluster (``mnist-codec sweep --cluster``), two default-size
  experiments one after the other on one 2-CPU node of a mini-cluster on 127.0.0.1, with a bare
  git remote, a DVC directory remote and ``mnist-codec server``: the seconds each task spends on
  the cluster's own work (scheduling, checks, clone or fetch, pull, push) against its
  ``dvc exp run``. The first task clones, the second finds the node's clone and fetches.

* ``serve``: the registered champion of this checkout's MLflow store (``make repro`` sets it) on
  Ray Serve (``make serve-ray``) and on MLflow's scoring server (``make serve-model``), both on
  127.0.0.1, under Locust's load: single images at 1, 8 and 32 users, 256-image requests as JSON
  and as npy, and a soak of both at once (``benchmarks/bench_serve.py``).

It writes medians, ratios and every model's MSE to a Markdown file, and the raw figures to
a JSON file beside it (a benchmark not run this time keeps its earlier section).

Usage (from the project root):
    .venv/bin/python benchmarks/bench_pipeline.py [--only notebook|seeds|precision|plans|cluster|serve]
        [--rounds 2] [--before REF]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
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

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from mnist_codec.machine import cpu_numbers

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
    """The working tree's files (tracked, and untracked but not ignored), or the commit
    ``ref``'s, into a new git repo, params.yaml overridden
    (``{'data': {'protocol': 'notebook'}, 'n_seeds': 1}``)."""
    if ref is not None:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.splitlines()
        for name in files:
            src = ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict):
            params[key].update(value)
        else:
            params[key] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for path in (
        "dvc.lock",
        "reports/metrics.json",
        "reports/metrics_detail.json",
    ):  # as a fresh clone of a repo never run here
        (dest / path).unlink(missing_ok=True)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "benchmark copy"], cwd=dest, check=True)


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


def markdown(results: dict) -> str:
    parts = ["# Benchmarks: the pipeline side by side", ""]
    if "seeds" in results:
        parts.append(seeds_markdown(results["seeds"]))
    if "notebook" in results:
        parts.append(notebook_markdown(results["notebook"]))
    if "precision" in results:
        parts.append(precision_markdown(results["precision"]))
    if "plans" in results:
        parts.append(plans_markdown(results["plans"]))
    if "cluster" in results:
        parts.append(cluster_markdown(results["cluster"]))
    if "serve" in results:
        parts.append(serve_markdown(results["serve"]))
    return "\n".join(parts)


def serve_markdown(result: dict) -> str:
    import bench_serve

    if "cases" not in result:  # measured before the load test: one client, MLflow's server only
        return ""
    return bench_serve.markdown(result, section_head("The champion served under load: Ray Serve and MLflow", result))


def bench_serve(args, work: Path, env: dict, log: Path) -> dict:
    """Both servers under Locust's load (benchmarks/bench_serve.py)."""
    import bench_serve as serve_bench

    return serve_bench.bench(args, work, env, log)


CLUSTER_TARGET = 0.10  # the cluster's own work, at most this share of an experiment's run


def bench_cluster(args, work: Path, env: dict, log: Path) -> dict:
    """Two default-size sweep points on a one-node mini-cluster (see the module docstring)."""
    import signal
    import socket
    import urllib.request

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every Ray node on 127.0.0.1
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from ray.cluster_utils import Cluster

    from mnist_codec.experiments.guard import HOME_ENV

    git_id = {
        f"GIT_{w}_{k}": v for w in ("AUTHOR", "COMMITTER") for k, v in (("NAME", "bench"), ("EMAIL", "bench@localhost"))
    }
    env = {**env, **git_id, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    origin, store, seed, driver = work / "origin.git", work / "dvc-store", work / "seed", work / "driver"
    seed.mkdir()
    copy_tree(seed, {})
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    for cmd in (
        ["dvc", "remote", "add", "-d", "team", str(store)],
        ["git", "add", ".dvc/config"],
        ["git", "commit", "-qm", "the team's DVC remote"],
        ["git", "branch", "-M", "main"],
        ["git", "remote", "add", "origin", str(origin)],
        ["git", "push", "-q", "origin", "main"],
    ):
        subprocess.run(cmd, cwd=seed, env=env, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(driver)], check=True)
    timed(["dvc", "repro", "preprocess"], driver, env, log)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(log, "a") as fh:
        server = subprocess.Popen(
            ["mnist-codec", "server", "--port", str(port), "--dir", str(work / "server")],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in (HOME_ENV, *git_id)}
    os.environ.update({HOME_ENV: str(work / "nodes"), **git_id})
    cluster = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"cluster: the tracking server did not start; see {log}") from None
                time.sleep(0.3)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        outcomes, whole = [], []
        for size in ("32", "16"):  # one sweep each, so neither waits for a free node
            out = work / f"sweep-{size}.json"
            whole.append(
                timed(
                    [
                        "mnist-codec",
                        "sweep",
                        "--cluster",
                        cluster.address,
                        "--sizes",
                        size,
                        "--cpus",
                        "2",
                        "--json",
                        str(out),
                    ],
                    driver,
                    {**env, "MLFLOW_TRACKING_URI": url},
                    log,
                )
            )
            outcomes += json.loads(out.read_text())["outcomes"]
    finally:
        if cluster is not None:
            session = cluster.head_node.get_session_dir_path()
            cluster.shutdown()
            shutil.rmtree(session, ignore_errors=True)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {
        "outcomes": [{"name": o["name"], "steps": o["steps"], "whole": w} for o, w in zip(outcomes, whole, strict=True)]
    }


def cluster_markdown(result: dict) -> str:
    steps = ["queued", "check", "clone", "pull", "push"]
    lines = [
        *section_head("The sweep on a Ray cluster: the cluster's own work against the experiment", result),
        (
            "- **Cluster:** Ray's mini-cluster on 127.0.0.1 (a head with no CPUs, one node of "
            "2 CPUs), a bare git remote, a DVC directory remote and `mnist-codec server`, all "
            "on this machine; two default-size experiments (`rd-32`, then `rd-16`: the default "
            "params, 3 seeds), each its own `mnist-codec sweep --cpus 2`, so `queued` is Ray's "
            "scheduling on a free node."
        ),
        "",
        "| Experiment | " + " | ".join(steps) + " | overhead | `dvc exp run` | overhead / run |",
        "|---|" + "---:|" * (len(steps) + 3),
    ]
    worst = 0.0
    for o in result["outcomes"]:
        st = o["steps"]
        overhead = sum(v for k, v in st.items() if k != "run")
        share = overhead / st["run"]
        worst = max(worst, share)
        lines.append(
            f"| `{o['name']}` | "
            + " | ".join(f"{st.get(k, 0.0):.1f} s" for k in steps)
            + f" | {overhead:.1f} s | {st['run']:.1f} s | {share * 100:.1f}% |"
        )
    met = "met" if worst <= CLUSTER_TARGET else "**not met**"
    wholes = ", ".join(f"{o['whole']:.0f} s for `{o['name']}`" for o in result["outcomes"])
    lines += [
        "",
        (
            f"Target: the cluster's own work at most {CLUSTER_TARGET * 100:.0f}% of an experiment's run; "
            f"worst measured {worst * 100:.1f}%: {met}. The first experiment cloned the git remote; the second "
            "found the node's clone and fetched. The whole command, with the driver's checks, Ray's start-up, "
            f"`dvc exp pull` and the report, took {wholes}."
        ),
        "",
    ]
    return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=["notebook", "seeds", "precision", "plans", "cluster", "serve"],
        help="run one benchmark (default: all)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--before", metavar="REF", help="notebook: also time the pipeline at this commit, stage by stage (e.g. HEAD~3)"
    )
    parser.add_argument("--calls", type=int, default=400, help="serve: in-process calls per batch size")
    parser.add_argument("--case-s", type=float, default=20, help="serve: seconds of load per case and server")
    parser.add_argument("--soak-s", type=float, default=600, help="serve: the soak's seconds (600 for the targets)")
    parser.add_argument("--soak-rps", type=float, default=50, help="serve: the soak's requests/s on each server")
    parser.add_argument(
        "--notebook",
        type=Path,
        default=ROOT / "benchmarks/notebook_baseline.py",
        help="the notebook as a script (default: the repository's own)",
    )
    parser.add_argument(
        "--mnist",
        type=Path,
        default=ROOT / "src/mnist_codec/datasets/mnist",
        help="the four MNIST .gz files the notebook script reads (default: the bundled ones)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/RESULTS.md")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the Markdown from the JSON beside it, without measuring"
    )
    args = parser.parse_args(argv)
    store = args.out.with_suffix(".json")
    results = json.loads(store.read_text()) if store.exists() else {}
    if "machine" in results:  # written before there were two benchmarks: the notebook one
        results = {"notebook": results}
    if args.render_only:
        args.out.write_text(markdown(results))
        return 0
    which = [args.only] if args.only else ["seeds", "notebook", "precision", "plans", "cluster", "serve"]
    if "notebook" in which and not args.notebook.is_file():
        parser.error(f"--notebook: {args.notebook} not found")
    command = "python benchmarks/bench_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    log = args.out.with_suffix(".log")
    log.write_text("")
    for what in which:
        with tempfile.TemporaryDirectory(prefix="mnist-codec-bench-") as tmp:
            work = Path(tmp)
            env = {
                **os.environ,
                "DVC_NO_ANALYTICS": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
            env.pop("MLFLOW_TRACKING_URI", None)
            bench = {
                "notebook": bench_notebook,
                "seeds": bench_seeds,
                "precision": bench_precision,
                "plans": bench_plans,
                "cluster": bench_cluster,
                "serve": bench_serve,
            }[what]
            measured = bench(args, work, env, log)
        results[what] = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command.strip(),
            "machine": machine(),
            **measured,
        }
        store.write_text(json.dumps(results, indent=2) + "\n")
    args.out.write_text(markdown(results))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
