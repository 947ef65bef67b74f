"""One sweep point on one cluster node: a DVC experiment run in a node-local clone of the
team's git remote and pushed back to it.

:mod:`.cluster` sends :func:`run_point` to the nodes as a Ray task; nothing here imports Ray,
so the steps can be read (and run) without a cluster. On the node, the task

1. takes a free clone of the git remote under ``$MNIST_CODEC_CLUSTER_HOME`` (kept between tasks,
   one per task running at once on the node, each guarded by a lock file),
2. fetches and checks out the sweep's commit, and brings in the outputs the remote has
   (``dvc pull --allow-missing``; the stages missing there re-run from the bundled data),
3. runs ``dvc exp run -n <name> -S ...``, recording the node in ``ran_on.yaml`` and on every
   MLflow run (tags ``mnist_codec.ray_node`` and ``mnist_codec.ray_host``),
4. pushes the experiment: ``dvc exp push origin <name>`` (git refs and DVC outputs).

Every command runs under a guard that kills its whole process group when the task's worker
dies, so a node that goes away leaves no DVC or training process behind to push a second copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..tracking.tags import RUN_TAGS_ENV
from .guard import clone_slot, guarded

RAN_ON = "ran_on.yaml"  # the node an experiment ran on, as params `dvc exp show` lists


@dataclass(frozen=True)
class Point:
    """One experiment of a sweep: its name and its ``-S`` overrides."""

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    """What every task of one sweep shares."""

    git_remote: str  # URL or path of the team's git remote
    commit: str  # the sweep's commit (full SHA), on that remote
    tracking_uri: str  # the team's tracking server
    sweep_id: str  # tags every MLflow run of the sweep, so a dead attempt's runs can be found
    force: bool = False  # push over an experiment of the same name already on the remote


@dataclass
class Outcome:
    """What a task reports back: where it ran, how long each step took, and how it ended."""

    name: str
    node_id: str
    host: str
    ok: bool
    error: str = ""  # one line, naming the step and the node, when not ok
    rev: str = ""  # the experiment's commit, when ok
    already: bool = False  # it was on the remote before this task ran
    started: float = 0.0  # time.time() when the task began on its node
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds: queued, check, clone, pull, run, push

    @property
    def wall(self) -> float:
        return sum(self.steps.values())

    @property
    def overhead(self) -> float:
        """Seconds spent on the cluster's own work: the checks, clone or fetch, pull and push
        (the wait for a free node is counted apart, as ``queued``)."""
        return self.wall - self.steps.get("run", 0.0) - self.steps.get("queued", 0.0)

    def to_dict(self) -> dict:
        return asdict(self)


class StepFailed(Exception):
    """A step of a task failed; the message is the one line the sweep reports."""


def exp_ref_prefix(commit: str) -> str:
    """The git ref folder DVC keeps a commit's experiments under."""
    return f"refs/exps/{commit[:2]}/{commit[2:]}/"


def remote_experiments(
    git_remote: str, commit: str, cwd: Path | None = None, env: dict | None = None
) -> dict[str, str]:
    """name -> experiment commit of every experiment of ``commit`` on the git remote."""
    out = subprocess.run(
        ["git", "ls-remote", git_remote, exp_ref_prefix(commit) + "*"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        raise StepFailed(f"cannot reach the git remote {git_remote}: {_last_line(out.stderr)}")
    found = {}
    for line in out.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith(exp_ref_prefix(commit)):
            found[ref[len(exp_ref_prefix(commit)) :]] = sha
    return found


def _last_line(text: str) -> str:
    """The line that says what went wrong: a stage's own error line (``train_ae: error: ...``),
    else DVC's or git's first error line (the cause; DVC's later ones sum it up), else the last
    line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ours = [line for line in lines if re.match(r"^\w+: error: ", line)]
    if ours:
        return ours[-1]
    errors = [line for line in lines if line.startswith(("ERROR", "fatal:", "error:"))]
    return errors[0] if errors else (lines or ["(no output)"])[-1]


def task_env(repo: Path, job: Job, point: Point, node_id: str, host: str) -> dict[str, str]:
    """The environment of every command a task runs: the node's own tools first on PATH, the
    clone's code (the sweep's commit) on PYTHONPATH, the team's tracking server, and the tags
    that say where each MLflow run ran."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(repo / "src")
    env["MLFLOW_TRACKING_URI"] = job.tracking_uri
    env["DVC_NO_ANALYTICS"] = "1"
    env[RUN_TAGS_ENV] = json.dumps(
        {
            "mnist_codec.ray_node": node_id,
            "mnist_codec.ray_host": host,
            "mnist_codec.sweep": job.sweep_id,
            "mnist_codec.sweep_point": point.name,
        }
    )
    for who in ("AUTHOR", "COMMITTER"):  # dvc exp run commits the experiment
        env.setdefault(f"GIT_{who}_NAME", "mnist-codec cluster")
        env.setdefault(f"GIT_{who}_EMAIL", f"cluster@{host}")
    return env


def check_tracking_server(uri: str) -> None:
    """The tracking server answers its health check, or StepFailed says it does not."""
    from ..tracking.store import is_server

    if not is_server(uri):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=15) as r:
            if r.status < 500:
                return
            reason = f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            return
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise StepFailed(f"cannot reach the tracking server {uri}: {reason}")


def fail_open_runs(tracking_uri: str, sweep_id: str, point: str | None = None) -> int:
    """End as FAILED every run of the sweep (of one point, if given) still RUNNING: what an
    attempt on a node that died left behind. A task calls it for its point before it starts
    (Ray runs a task again only after its attempt is gone); the driver, for the whole sweep,
    once no task runs."""
    import mlflow
    from mlflow.entities import RunStatus

    from ..tracking.store import experiment_name

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment_name())
    if exp is None:
        return 0
    where = f"tags.`mnist_codec.sweep` = '{sweep_id}' and attributes.status = 'RUNNING'"
    if point is not None:
        where += f" and tags.`mnist_codec.sweep_point` = '{point}'"
    stale = client.search_runs([exp.experiment_id], max_results=5000, filter_string=where)
    for run in stale:
        client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.FAILED))
    return len(stale)


def _step(
    steps: dict[str, float],
    name: str,
    cmd: list[str],
    repo: Path,
    env: dict[str, str],
    what: str,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    out = guarded(cmd, cwd or repo, env)
    steps[name] = steps.get(name, 0.0) + time.perf_counter() - start
    if out.returncode != 0:
        raise StepFailed(f"{what}: {_last_line(out.stderr + out.stdout)}")
    return out


def prepare_clone(repo: Path, job: Job, env: dict[str, str], steps: dict[str, float]) -> None:
    """The clone at the sweep's commit with nothing of an earlier task in its files (the
    outputs it holds stay in DVC's cache and are checked out where they match)."""
    git_what = f"cannot reach the git remote {job.git_remote}"
    if not (repo / ".git").is_dir():
        shutil.rmtree(repo, ignore_errors=True)
        _step(
            steps,
            "clone",
            ["git", "clone", "-q", "--no-checkout", job.git_remote, str(repo)],
            repo,
            env,
            git_what,
            cwd=repo.parent,
        )
    else:
        _step(steps, "clone", ["git", "remote", "set-url", "origin", job.git_remote], repo, env, git_what)
        _step(steps, "clone", ["git", "fetch", "-q", "origin"], repo, env, git_what)
    _step(
        steps,
        "clone",
        ["git", "checkout", "-q", "--force", "--detach", job.commit],
        repo,
        env,
        f"commit {job.commit[:12]} is not on the git remote {job.git_remote}",
    )
    _step(steps, "clone", ["git", "clean", "-q", "-fd"], repo, env, "cannot clean the clone")


def run_point(job: Job, point: Point, node_id: str, host: str | None = None, submitted: float | None = None) -> Outcome:
    """Run one sweep point on this node and push it; never raises for the experiment's own
    failures (they come back as an Outcome with its one-line error)."""
    host = host or socket.gethostname()
    started = time.time()
    outcome = Outcome(point.name, node_id, host, ok=False, started=started)
    if submitted is not None:
        outcome.steps["queued"] = max(0.0, started - submitted)  # from the driver's submit to this start
    where = f"node {host} ({node_id[:12]})"
    try:
        with clone_slot(job.git_remote, node_id) as repo:
            env = task_env(repo, job, point, node_id, host)
            start = time.perf_counter()
            check_tracking_server(job.tracking_uri)
            fail_open_runs(job.tracking_uri, job.sweep_id, point.name)
            if not job.force:
                pushed = remote_experiments(job.git_remote, job.commit, env=env)
                if point.name in pushed:
                    outcome.steps["check"] = time.perf_counter() - start
                    outcome.ok, outcome.already, outcome.rev = True, True, pushed[point.name]
                    return outcome
            outcome.steps["check"] = time.perf_counter() - start
            prepare_clone(repo, job, env, outcome.steps)
            _step(
                outcome.steps, "pull", ["dvc", "pull", "--allow-missing"], repo, env, "cannot pull from the DVC remote"
            )
            if _has_local(repo, env, point.name):  # run here before (with --force): DVC would refuse the name
                _step(
                    outcome.steps,
                    "run",
                    ["dvc", "exp", "remove", point.name],
                    repo,
                    env,
                    f"cannot remove the earlier {point.name} from the clone",
                )
            sets = [*point.overrides, f"{RAN_ON}:node={node_id}", f"{RAN_ON}:host={host}"]
            _step(
                outcome.steps,
                "run",
                ["dvc", "exp", "run", "-n", point.name, *[a for s in sets for a in ("-S", s)]],
                repo,
                env,
                f"experiment {point.name} failed",
            )
            rev = _step(
                outcome.steps,
                "push",
                ["git", "rev-parse", f"refs/exps/{job.commit[:2]}/{job.commit[2:]}/{point.name}"],
                repo,
                env,
                f"experiment {point.name} left no commit",
            ).stdout.strip()
            push = ["dvc", "exp", "push", *(["--force"] if job.force else []), "origin", point.name]
            _step(outcome.steps, "push", push, repo, env, "cannot push to the git or DVC remote")
            outcome.ok, outcome.rev = True, rev
    except StepFailed as exc:
        outcome.error = f"{where}: {exc}"
    except subprocess.TimeoutExpired as exc:
        outcome.error = f"{where}: {' '.join(exc.cmd[:3])} ran past {exc.timeout:.0f} s"
    return outcome


def _has_local(repo: Path, env: dict[str, str], name: str) -> bool:
    """The clone already holds an experiment of that name (a forced run again on this node)."""
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps/"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return any(ref.rsplit("/", 1)[-1] == name for ref in out.stdout.split())
