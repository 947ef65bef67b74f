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
  and as npy, and a soak of both at once (``benchmarks/bench/serve.py``).

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
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import cluster, notebook, plans, precision, seeds, serve
from .common import ROOT, machine

BENCHMARKS = {
    "seeds": (seeds.bench_seeds, seeds.seeds_markdown),
    "notebook": (notebook.bench_notebook, notebook.notebook_markdown),
    "precision": (precision.bench_precision, precision.precision_markdown),
    "plans": (plans.bench_plans, plans.plans_markdown),
    "cluster": (cluster.bench_cluster, cluster.cluster_markdown),
    "serve": (serve.bench, serve.serve_markdown),
}


def markdown(results: dict) -> str:
    parts = ["# Benchmarks: the pipeline side by side", ""]
    parts += [render(results[name]) for name, (_, render) in BENCHMARKS.items() if name in results]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=list(BENCHMARKS),
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
    which = [args.only] if args.only else list(BENCHMARKS)
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
            measure, _ = BENCHMARKS[what]
            measured = measure(args, work, env, log)
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
