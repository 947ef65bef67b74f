"""``cluster``: the sweep on a Ray cluster (``mnist-codec sweep --cluster``), two default-size
experiments one after the other on one 2-CPU node of a mini-cluster on 127.0.0.1, with a bare
git remote, a DVC directory remote and ``mnist-codec server``: the seconds each task spends on
the cluster's own work (scheduling, checks, clone or fetch, pull, push) against its
``dvc exp run``. The first task clones, the second finds the node's clone and fetches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .common import copy_tree, section_head, timed
from services import TrackingServer

CLUSTER_TARGET = 0.10  # the cluster's own work, at most this share of an experiment's run


def bench_cluster(args, work: Path, env: dict, log: Path) -> dict:
    """Two default-size sweep points on a one-node mini-cluster (see the module docstring)."""

    from mnist_codec.experiments.guard import HOME_ENV
    from mnist_codec.loopback import RAY_LOOPBACK, keep_ray_on_loopback

    keep_ray_on_loopback()  # every Ray node on 127.0.0.1
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from ray.cluster_utils import Cluster

    git_id = {
        f"GIT_{w}_{k}": v for w in ("AUTHOR", "COMMITTER") for k, v in (("NAME", "bench"), ("EMAIL", "bench@localhost"))
    }
    env = {**env, **git_id, **RAY_LOOPBACK, "RAY_USAGE_STATS_ENABLED": "0"}
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
    try:
        server = TrackingServer(work / "server", env=env)  # on a free port of 127.0.0.1, up when it answers
    except RuntimeError as exc:
        raise SystemExit(f"cluster: the tracking server did not start: {exc}") from None
    url = server.url
    saved = {k: os.environ.get(k) for k in (HOME_ENV, *git_id)}
    os.environ.update({HOME_ENV: str(work / "nodes"), **git_id})
    cluster = None
    try:
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
        server.stop()
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
