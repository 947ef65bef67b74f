"""The rate–distortion sweep over a Ray cluster: ``mnist-codec sweep --cluster ADDRESS`` (what
``make sweep CLUSTER=ADDRESS`` runs; ``RAY_ADDRESS`` is read as Ray reads it).

The driver, in a clean checkout whose commit is on ``origin``:

1. checks what every node will need: the git remote holds the commit, the tracking server
   answers, the cluster takes a connection;
2. finds the sweep's experiments already on the git remote for this commit (they are not run
   again unless ``--force``);
3. sends each other sweep point to the cluster as a Ray task with declared CPUs (and GPUs),
   spread over the nodes, retried on another node when its node dies (:mod:`.node` is what a
   task does there);
4. ends FAILED any MLflow run of the sweep still RUNNING (a last attempt on a dead node), pulls
   the experiments (``dvc exp pull origin``), prints where each ran, and writes
   ``reports/rate_distortion.*`` as the one-machine sweep does.

Ctrl-C cancels every task still running; the driver's workspace is written only at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..errors import MnistCodecError
from ..tracking.store import is_server
from .node import Job, Outcome, Point, StepFailed, _last_line, check_tracking_server, fail_open_runs, remote_experiments

DEFAULT_RETRIES = 2  # attempts after the first when a task's node or worker dies


class ClusterError(MnistCodecError):
    """The cluster sweep cannot start, was interrupted, or some of its experiments failed."""


def plan(sizes: list[int], extra: tuple[str, ...] = ()) -> list[Point]:
    """One experiment per code size, as the one-machine sweep names them: rd-<k>."""
    from .sweep import PREFIX

    if not sizes:
        raise ClusterError("no code sizes")
    bad = [k for k in sizes if k < 1]
    if bad:
        raise ClusterError(f"code sizes must be whole numbers from 1: {bad}")
    return [Point(f"{PREFIX}{k}", (f"latent_dim={k}", *extra)) for k in dict.fromkeys(sizes)]


def _git(repo: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=timeout)


def sweep_job(repo: Path, tracking_uri: str | None, force: bool, writes: tuple[Path, ...] = ()) -> Job:
    """What every task needs, checked from the driver first: a clean checkout whose commit is on
    ``origin``, and a tracking server that answers. (``dvc.lock`` and the files the sweep itself
    ``writes`` may differ from the commit's: they record this checkout's own runs, such as the
    ``dvc repro preprocess`` before a sweep, and its last sweep.)"""
    changed = [line[3:] for line in _git(repo, "status", "--porcelain", "--untracked-files=no").stdout.splitlines()]
    own = {"dvc.lock", *(str(Path(p)) for p in writes)}  # what this checkout's own runs and sweeps write
    changed = [path for path in changed if path not in own]
    if changed:
        raise ClusterError(
            f"the checkout has uncommitted changes ({', '.join(changed[:5])}); the nodes run the "
            "commit as pushed to origin: commit and push them first"
        )
    commit = _git(repo, "rev-parse", "HEAD").stdout.strip()
    url = _git(repo, "remote", "get-url", "origin")
    if url.returncode != 0:
        raise ClusterError("this checkout has no git remote 'origin': the nodes clone the sweep's commit from it")
    git_remote = url.stdout.strip()
    fetch = _git(repo, "fetch", "-q", "origin")
    if fetch.returncode != 0:
        raise ClusterError(f"cannot reach the git remote {git_remote}: {_last_line(fetch.stderr)}")
    if not _git(repo, "branch", "-r", "--contains", commit).stdout.strip():
        raise ClusterError(
            f"commit {commit[:12]} is not on origin ({git_remote}): push it first, the nodes clone it from there"
        )
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not is_server(uri):
        raise ClusterError(
            "a cluster sweep logs to the team's tracking server: set MLFLOW_TRACKING_URI "
            f"or --tracking-uri to its http(s) address (got {uri or 'nothing'!r})"
        )
    try:
        check_tracking_server(uri)
    except StepFailed as exc:
        raise ClusterError(f"{exc}") from None
    return Job(git_remote, commit, uri, uuid.uuid4().hex[:12], force)


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` as its driver."""
    import ray

    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... by version
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def _task(job: Job, point: Point, submitted: float) -> Outcome:
    """A sweep point as a Ray task: :func:`.node.run_point` on whichever node runs it."""
    import ray

    from .node import run_point

    return run_point(job, point, ray.get_runtime_context().get_node_id(), submitted=submitted)


def submit(job: Job, points: list[Point], cpus: float, gpus: float, retries: int) -> dict:
    """Each point as a Ray task spread over the nodes; ref -> point."""
    import ray

    task = ray.remote(_task).options(
        num_cpus=cpus,
        num_gpus=gpus,
        max_retries=retries,
        retry_exceptions=False,
        scheduling_strategy="SPREAD",
        name="mnist-codec-sweep-point",
    )
    return {task.remote(job, p, time.time()): p for p in points}


def gather(refs: dict, say: Callable[[str], None] = print) -> list[Outcome]:
    """Each task's outcome as it finishes. A task Ray gave up on (its retries spent on dead
    nodes) comes back as a failed Outcome with Ray's reason."""
    import ray
    from ray.exceptions import RayError

    outcomes, pending = [], list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        point = refs[ready[0]]
        try:
            outcome = ray.get(ready[0])
        except RayError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            outcome = Outcome(
                point.name, "-", "-", ok=False, error=f"ray gave up on it: {type(exc).__name__}: {reason}"
            )
        outcomes.append(outcome)
        say(f"sweep: {point.name} " + ("done on " + outcome.host if outcome.ok else "FAILED: " + outcome.error))
    return outcomes


def cancel(refs: dict, timeout: float = 60.0) -> None:
    """Cancel every task (``force``: its worker is killed, and with it the commands it runs), and
    wait until Ray has ended them, so that none still runs when the driver reports."""
    import ray

    for ref in refs:
        with contextlib.suppress(Exception):  # already finished
            ray.cancel(ref, force=True)
    ray.wait(list(refs), num_returns=len(refs), timeout=timeout)


def pull(repo: Path, names: list[str]) -> None:
    """The experiments into the driver's repository: git refs and their DVC outputs."""
    if not names:
        return
    out = subprocess.run(
        ["dvc", "exp", "pull", "-f", "origin", *names], cwd=repo, capture_output=True, text=True, timeout=3600
    )
    if out.returncode != 0:
        raise ClusterError(f"dvc exp pull origin failed: {_last_line(out.stderr + out.stdout)}")


def table(outcomes: list[Outcome], results: dict[str, str]) -> str:
    """Experiment, node, host, the wait for a free node, wall time on the node, the cluster's
    overhead in it, and the result, one row each."""
    head = ["experiment", "node", "host", "queued s", "wall s", "overhead s", "result"]
    rows = []
    for o in sorted(outcomes, key=lambda o: o.name):
        if o.already:
            rows.append([o.name, "-", "-", "-", "-", "-", "on origin already: " + results.get(o.name, o.rev[:12])])
        else:
            queued = o.steps.get("queued", 0.0)
            rows.append(
                [
                    o.name,
                    o.node_id[:12],
                    o.host,
                    f"{queued:.1f}",
                    f"{o.wall - queued:.1f}",
                    f"{o.overhead:.1f}",
                    results.get(o.name, "") if o.ok else "FAILED: " + o.error,
                ]
            )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def results_of(rows: list[dict]) -> dict[str, str]:
    """name -> its evaluation MSE per codec (mean over seeds), from ``dvc.api.exp_show`` rows."""
    from .exps import latest_finished

    return {
        name: ", ".join(f"{codec} {s['mean']:.5f}" for codec, s in sorted(exp.mse.items()))
        for name, exp in latest_finished(rows).items()
    }


def run(
    repo: Path,
    address: str,
    sizes: list[int],
    extra: tuple[str, ...] = (),
    cpus: float = 1,
    gpus: float = 0,
    retries: int | None = None,
    force: bool = False,
    tracking_uri: str | None = None,
    data_dir: Path = Path("data/processed"),
    figure: Path = Path("reports/rate_distortion.png"),
    table_path: Path = Path("reports/rate_distortion.md"),
    csv_path: Path = Path("reports/rate_distortion.csv"),
    json_path: Path | None = None,
    say: Callable[[str], None] = print,
) -> list[Outcome]:
    """The whole cluster sweep; raises ClusterError after writing the report when any
    experiment failed. ``json_path`` gets every outcome (node, host, seconds per step, error)."""
    from . import exps, sweep

    retries = DEFAULT_RETRIES if retries is None else retries
    if cpus <= 0 or gpus < 0 or retries < 0:
        raise ClusterError(f"--cpus must be above 0, --gpus and --retries at least 0 (got {cpus}, {gpus}, {retries})")
    from .sweep import SIZES

    points = plan(list(sizes or SIZES), extra)
    job = sweep_job(repo, tracking_uri, force, writes=(figure, table_path, csv_path))
    try:
        on_origin = remote_experiments(job.git_remote, job.commit)
    except StepFailed as exc:
        raise ClusterError(f"{exc}") from None
    todo = [p for p in points if force or p.name not in on_origin]
    outcomes = [
        Outcome(p.name, "-", "-", ok=True, already=True, rev=on_origin[p.name]) for p in points if p not in todo
    ]
    for o in outcomes:
        say(f"sweep: {o.name} is on origin already for commit {job.commit[:12]}: not run again (--force runs it)")
    if todo:
        connect(address)
        say(
            f"sweep: {len(todo)} experiment(s) of commit {job.commit[:12]} on the Ray cluster at {address} "
            f"({cpus:g} CPU(s) each, sweep {job.sweep_id})"
        )
        refs = submit(job, todo, cpus, gpus, retries)
        try:
            outcomes += gather(refs, say)
        except KeyboardInterrupt:
            cancel(refs)
            fail_open_runs(job.tracking_uri, job.sweep_id)
            raise ClusterError(f"interrupted: {len(refs)} task(s) cancelled; nothing written here") from None
        finally:
            import ray

            ray.shutdown()
        fail_open_runs(job.tracking_uri, job.sweep_id)
    pull(repo, [o.name for o in outcomes if o.ok])
    rows = exps.show(repo)
    say(table(outcomes, results_of(rows)))
    if json_path is not None:
        from ..atomic import write_bytes

        write_bytes(
            json_path,
            json.dumps(
                {
                    "commit": job.commit,
                    "sweep": job.sweep_id,
                    "cluster": address,
                    "outcomes": [o.to_dict() for o in outcomes],
                },
                indent=2,
            ).encode()
            + b"\n",
        )
    if any(o.ok for o in outcomes):
        sweep.report(rows, data_dir, figure, table_path, csv_path)
        say(f"sweep: {figure}, {table_path}, {csv_path}")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise ClusterError(
            f"{len(failed)} of {len(outcomes)} experiment(s) failed:\n"
            + "\n".join(f"  {o.name}: {o.error}" for o in failed)
        )
    return outcomes


def main_address(cli_value: str | None) -> str:
    """The cluster's address: ``--cluster``, else ``$RAY_ADDRESS`` (Ray's own convention)."""
    address = cli_value or os.environ.get("RAY_ADDRESS", "")
    if not address:
        raise ClusterError("no cluster address: pass --cluster HOST:PORT or set RAY_ADDRESS")
    return address
