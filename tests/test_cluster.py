"""The sweep on a Ray cluster, against real pieces on 127.0.0.1: Ray's mini-cluster
(``ray.cluster_utils.Cluster``: a head node with no CPUs and two worker nodes of one CPU each,
every node on 127.0.0.1 with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), a bare git remote, a DVC
directory remote and ``mnist-codec server``. Each experiment is the tiny profile.

The first tests need none of these (the plan, the table, the guard, the driver's refusals);
those marked ``full`` start them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from mnist_codec.experiments import cluster, guard, node
from mnist_codec.experiments.node import Job, Outcome, Point
from mnist_codec.loopback import RAY_LOOPBACK

from conftest import project_copy, project_env
from services import ctrl_c_as_in_a_terminal, gone, off_loopback, wait_for

TINY = {
    "n_seeds": 1,
    "activation": ["relu"],
    "data": {"train_limit": 600, "eval_limit": 200},
    "train": {"epochs": 1},
    "evaluate": {"n_examples": 4, "n_projection": 100},
}
BIN = Path(sys.executable).parent
# The experiments a test kills or interrupts while training runs: long enough (several seconds of
# the deep AE's training on 2 cores) that training is still on when the test acts on seeing its run
# open. With one epoch, a training stage's run is open well under a second beyond its start-up.
MID_TRAINING_EPOCHS = 300


def git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, env=project_env(root), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"git {args} failed:\n{out.stderr}"
    return out.stdout


# --- without a cluster -----------------------------------------------------------------------------


def test_the_plan_names_each_code_size_as_the_one_machine_sweep_does():
    points = cluster.plan([2, 8, 2], ("train.epochs=1",))
    assert points == [
        Point("rd-2", ("latent_dim=2", "train.epochs=1")),
        Point("rd-8", ("latent_dim=8", "train.epochs=1")),
    ]
    with pytest.raises(cluster.ClusterError, match=r"code sizes must be whole numbers from 1: \[0\]"):
        cluster.plan([0, 4])


def test_the_table_says_where_each_experiment_ran_how_long_and_how_it_ended():
    ok = Outcome(
        "rd-2", "a" * 56, "vm-a", ok=True, rev="1" * 40, steps={"queued": 0.5, "clone": 1.0, "run": 40.0, "push": 2.0}
    )
    bad = Outcome(
        "rd-4",
        "b" * 56,
        "vm-b",
        ok=False,
        error="node vm-b (bbbbbbbbbbbb): experiment rd-4 failed: x",
        steps={"run": 3.0},
    )
    old = Outcome("rd-8", "-", "-", ok=True, already=True, rev="2" * 40)
    lines = cluster.table([bad, old, ok], {"rd-2": "ae 0.05000", "rd-8": "ae 0.03000"}).splitlines()
    assert lines[0].split() == ["experiment", "node", "host", "queued", "s", "wall", "s", "overhead", "s", "result"]
    assert lines[2].split()[:7] == ["rd-2", "aaaaaaaaaaaa", "vm-a", "0.5", "43.0", "3.0", "ae"]
    assert "FAILED: node vm-b (bbbbbbbbbbbb): experiment rd-4 failed: x" in lines[3]
    assert lines[4].startswith("rd-8") and "on origin already: ae 0.03000" in lines[4]
    assert ok.overhead == pytest.approx(3.0) and ok.wall == pytest.approx(43.5)


def test_a_failed_step_is_told_by_the_stages_own_line():
    text = (
        "Running stage 'fetch':\n> python stages/fetch.py --out data/raw\n"
        "fetch: error: params: 'latent_dim' = 1000: less than or equal to 783\n"
        "ERROR: failed to reproduce 'fetch': failed to run: python stages/fetch.py, exited with 2\n"
    )
    assert node._last_line(text) == "fetch: error: params: 'latent_dim' = 1000: less than or equal to 783"
    assert (
        node._last_line("fatal: repository '/nowhere.git' does not exist\n")
        == "fatal: repository '/nowhere.git' does not exist"
    )
    assert (
        node._last_line(
            "ERROR: failed to connect to s3 (b/x) - Could not connect\n"
            "ERROR: failed to pull data from the cloud - 1 files failed to download\n"
        )
        == "ERROR: failed to connect to s3 (b/x) - Could not connect"
    )
    assert node._last_line("") == "(no output)"


@pytest.mark.parametrize("how", ["the worker dies", "ray kills the worker's children, then the worker"])
def test_a_guarded_command_and_its_children_die_with_the_process_that_ran_it(tmp_path, how):
    """A dead node's or a cancelled task's command must leave no DVC or stage process behind.
    Two ways a Ray worker goes: killed outright (the node dies), or, on a forced cancel, it
    first SIGKILLs its own child processes (the guard, not what the guard started) and exits."""
    pidfile = tmp_path / "grandchild"
    script = (
        f"import sys; sys.path[:0] = {sys.path!r}\n"
        "from pathlib import Path\nfrom mnist_codec.experiments.guard import guarded\n"
        f"guarded(['sh', '-c', 'sleep 300 & echo $! > {pidfile}; wait'], Path('.'), dict(__import__('os').environ))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    grandchild = int(
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the command's pid", parent)
    )
    assert psutil.pid_exists(grandchild)
    if how != "the worker dies":
        for child in psutil.Process(parent.pid).children():  # the direct children only: the guard
            child.kill()
        time.sleep(0.5)
    parent.kill()  # no chance to clean up
    parent.wait()
    assert not gone([grandchild], 15), "the guarded command outlived the process that ran it"


def test_the_runs_tags_say_where_they_ran_and_bad_ones_are_refused(monkeypatch):
    from mnist_codec.tracking import tags as run_tags

    monkeypatch.setenv(run_tags.RUN_TAGS_ENV, json.dumps({"mnist_codec.ray_node": "abc", "mnist_codec.ray_host": "vm"}))
    assert run_tags.extra_tags() == {"mnist_codec.ray_node": "abc", "mnist_codec.ray_host": "vm"}
    assert run_tags.base_tags("train_ae", {"data": {"protocol": "holdout"}})["mnist_codec.ray_node"] == "abc"
    monkeypatch.setenv(run_tags.RUN_TAGS_ENV, "{not json")
    with pytest.raises(run_tags.RunTagsError, match="MNIST_CODEC_RUN_TAGS is not JSON"):
        run_tags.extra_tags()
    monkeypatch.setenv(run_tags.RUN_TAGS_ENV, json.dumps({"host": "vm"}))
    with pytest.raises(run_tags.RunTagsError, match=r"a JSON object of mnist_codec\.\* tags"):
        run_tags.extra_tags()
    monkeypatch.delenv(run_tags.RUN_TAGS_ENV)
    assert run_tags.extra_tags() == {}


def test_the_driver_refuses_what_the_nodes_could_not_run(tmp_path):
    """Each refusal is one line, before any task is sent."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "one"]):
        git(repo, *args)
    with pytest.raises(cluster.ClusterError, match="no git remote 'origin'"):
        cluster.sweep_job(repo, "http://127.0.0.1:1", False)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    git(repo, "remote", "add", "origin", str(origin))
    with pytest.raises(cluster.ClusterError, match=r"commit [0-9a-f]{12} is not on origin .*push it first"):
        cluster.sweep_job(repo, "http://127.0.0.1:1", False)
    git(repo, "push", "-q", "origin", "main")
    with pytest.raises(cluster.ClusterError, match="logs to the team's tracking server: set MLFLOW_TRACKING_URI"):
        cluster.sweep_job(repo, "sqlite:///mlflow.db", False)
    from services import free_port

    port = free_port()
    with pytest.raises(cluster.ClusterError, match=rf"cannot reach the tracking server http://127.0.0.1:{port}: "):
        cluster.sweep_job(repo, f"http://127.0.0.1:{port}", False)
    (repo / "file").write_text("x")
    git(repo, "add", "file")
    with pytest.raises(cluster.ClusterError, match=r"uncommitted changes \(file\)"):
        cluster.sweep_job(repo, f"http://127.0.0.1:{port}", False)
    git(repo, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    git(repo, "commit", "-qm", "two")
    with pytest.raises(cluster.ClusterError, match=r"cannot reach the git remote .*gone\.git"):
        cluster.sweep_job(repo, f"http://127.0.0.1:{port}", False)


def test_the_command_needs_an_address(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = subprocess.run(
        [str(BIN / "mnist-codec"), "sweep", "--sizes", "2"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert (
        out.stderr.strip().splitlines()[-1]
        == "mnist-codec sweep: error: no cluster address: pass --cluster HOST:PORT or set RAY_ADDRESS"
    )


def test_make_sweep_with_a_cluster_runs_the_cluster_command():
    from conftest import REPO

    for how in (["CLUSTER=127.0.0.1:6379"], []):
        env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:6379"} if not how else dict(os.environ)
        out = subprocess.run(
            ["make", "-n", "sweep", *how, "SWEEP_SIZES=2 4", "SWEEP_ARGS=-S n_seeds=1"],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        assert "mnist-codec sweep --cluster 127.0.0.1:6379 --sizes 2 4 -S n_seeds=1" in out.stdout
        assert "dvc queue start" not in out.stdout
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(["make", "-n", "sweep", "SWEEP_SIZES=2 4"], cwd=REPO, capture_output=True, text=True, env=env)
    assert "dvc queue start" in out.stdout and "--cluster" not in out.stdout


# --- a real cluster ---------------------------------------------------------------------------------

NODE_ENV = {
    **RAY_LOOPBACK,
    "RAY_USAGE_STATS_ENABLED": "0",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "mnist-codec tests",
    "GIT_AUTHOR_EMAIL": "tests@mnist-codec.invalid",
    "GIT_COMMITTER_NAME": "mnist-codec tests",
    "GIT_COMMITTER_EMAIL": "tests@mnist-codec.invalid",
}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def server(base):
    from services import TrackingServer

    srv = TrackingServer(base / "server")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ray_cluster(base):
    """The mini-cluster, its worker nodes started with the environment a node needs; every
    process it started is stopped by its PID at the end."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in [*NODE_ENV, guard.HOME_ENV, "DVC_SITE_CACHE_DIR"]}
    os.environ.update(NODE_ENV)
    os.environ[guard.HOME_ENV] = str(base / "nodes")
    os.environ["DVC_SITE_CACHE_DIR"] = str(base / "dvc-site-cache")
    small = {"object_store_memory": 80 * 2**20}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **small})
    workers = [c.add_node(num_cpus=1, **small) for _ in range(2)]
    c.wait_for_nodes()
    c.small = small
    c.workers = workers
    yield c
    started = [p.pid for p in psutil.Process().children(recursive=True)]
    session = c.head_node.get_session_dir_path()  # the nodes' logs and sockets, under Ray's temp folder
    c.shutdown()
    shutil.rmtree(session, ignore_errors=True)
    for pid in started:  # anything the cluster's own shutdown left
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def team(base) -> dict[str, Path]:
    """A bare git remote with the project (tiny profile) and a DVC directory remote as its
    default; the driver's clone, with the splits PCA's curve is computed on."""
    origin, store = base / "origin.git", base / "dvc-store"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    seed = project_copy(base / "seed", TINY)
    env = project_env(seed)
    subprocess.run([str(BIN / "dvc"), "remote", "add", "-d", "team", str(store)], cwd=seed, env=env, check=True)
    for args in (
        ["add", ".dvc/config"],
        ["commit", "-qm", "the team's DVC remote"],
        ["branch", "-M", "main"],
        ["remote", "add", "origin", str(origin)],
        ["push", "-q", "origin", "main"],
    ):
        git(seed, *args)
    driver = base / "driver"
    subprocess.run(["git", "clone", "-q", str(origin), str(driver)], check=True)
    subprocess.run(
        [str(BIN / "dvc"), "repro", "-q", "preprocess"], cwd=driver, env=project_env(driver), check=True, timeout=600
    )
    return {"origin": origin, "store": store, "driver": driver}


def sweep_cmd(ray_cluster, *args: str) -> list[str]:
    return [str(BIN / "mnist-codec"), "sweep", "--cluster", ray_cluster.address, *args]


def driver_env(team, server) -> dict[str, str]:
    env = project_env(team["driver"])
    env.update(NODE_ENV)
    env["MLFLOW_TRACKING_URI"] = server.url
    return env


def sweep_runs(server, point: str | None = None) -> list:
    import mlflow

    client = mlflow.MlflowClient(server.url)
    exp = client.get_experiment_by_name("mnist-codec")
    runs = client.search_runs([exp.experiment_id], max_results=5000) if exp else []
    return [
        r
        for r in runs
        if "mnist_codec.sweep_point" in r.data.tags
        and (point is None or r.data.tags["mnist_codec.sweep_point"] == point)
    ]


def ran_on(driver: Path, name: str) -> dict:
    from mnist_codec.experiments import exps

    exp = {e.name: e for e in exps.experiments(exps.show(driver))}[name]
    return yaml.safe_load(git(driver, "show", f"{exp.rev}:ran_on.yaml"))


class LoopbackWatch:
    """Every second while it runs: the sockets of this process's descendants (the Ray nodes,
    the driver, the tracking server) that leave the loopback."""

    def __init__(self):
        self.bad: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            pids = {p.pid for p in psutil.Process().children(recursive=True)}
            self.bad += off_loopback(pids)
            self.checks += 1
            self._stop.wait(1.0)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        return self.bad


@pytest.mark.full
def test_every_node_is_on_the_loopback(ray_cluster):
    import ray

    ray.init(address=ray_cluster.address, logging_level="WARNING")
    try:
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 3 and {n["NodeManagerAddress"] for n in alive} == {"127.0.0.1"}
    finally:
        ray.shutdown()
    pids = {p.pid for p in psutil.Process().children(recursive=True)}
    listening = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True).stdout
    assert any(f"pid={p}," in listening for p in pids), "no Ray process listens: the check would prove nothing"
    assert off_loopback(pids) == []


@pytest.mark.full
def test_a_sweep_over_two_nodes_runs_pushes_and_reports_every_experiment(ray_cluster, team, server):
    """Three experiments on two one-CPU nodes: two run, one on each node, are pushed, pulled and
    reported; one with an impossible code size fails with its one line, after the others finish.
    Nothing leaves the loopback. Run again, the finished ones are found on origin and not re-run."""
    driver = team["driver"]
    watch = LoopbackWatch()
    proc = subprocess.run(
        sweep_cmd(ray_cluster, "--sizes", "2", "4", "1000"),
        cwd=driver,
        env=driver_env(team, server),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    bad = watch.stop()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert bad == [] and watch.checks > 3
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors[-2] == "mnist-codec sweep: error: 1 of 3 experiment(s) failed:"
    assert errors[-1].startswith("  rd-1000: node ") and re.search(
        r"experiment rd-1000 failed: pca: error: params.yaml:\d+: 'latent_dim' = 1000 is not allowed", errors[-1]
    ), proc.stderr

    # every experiment that ran is in dvc exp show on the driver, with the node that ran it
    nodes = {w.node_id for w in ray_cluster.workers}
    where = {name: ran_on(driver, name) for name in ("rd-2", "rd-4")}
    assert {w["node"] for w in where.values()} <= nodes and len({w["node"] for w in where.values()}) == 2
    assert {w["host"] for w in where.values()} == {socket.gethostname()}
    refs = node.remote_experiments(str(team["origin"]), git(driver, "rev-parse", "HEAD").strip())
    assert set(refs) == {"rd-2", "rd-4"}

    # every MLflow run is on the server, finished, tagged with the node its experiment ran on
    for name, w in where.items():
        runs = sweep_runs(server, name)
        assert runs and {r.info.status for r in runs} == {"FINISHED"}, name
        assert {r.data.tags["mnist_codec.ray_node"] for r in runs} == {w["node"]}
        assert {r.data.tags["mnist_codec.dvc_exp"] for r in runs} == {name}

    # the table and the report
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("rd-")}
    assert set(rows) == {"rd-2", "rd-4", "rd-1000"}
    for name, w in where.items():
        assert w["node"][:12] in rows[name] and "ae " in rows[name]
    report = (driver / "reports" / "rate_distortion.csv").read_text()
    assert {int(line.split(",")[1]) for line in report.splitlines()[1:] if line.split(",")[0] == "ae"} == {2, 4}

    # again: found on origin, nothing run
    before = len(sweep_runs(server))
    again = subprocess.run(
        sweep_cmd(ray_cluster, "--sizes", "2", "4"),
        cwd=driver,
        env=driver_env(team, server),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("is on origin already") == 2 and "on the Ray cluster" not in again.stdout
    assert len(sweep_runs(server)) == before


def _wait_for_training(server, point: str, proc: subprocess.Popen, timeout: float = 600, stage: str | None = None):
    """The first run of ``point`` that a training stage (or ``stage``) has open."""
    stages = (stage,) if stage else ("train_ae", "train_deep")

    def training() -> list:
        runs = sweep_runs(server, point)
        return [r for r in runs if r.info.status == "RUNNING" and r.data.tags.get("mnist_codec.stage") in stages]

    try:
        return wait_for(training, timeout, f"a training run of {point}", proc, every=0.5)[0]
    except AssertionError as exc:
        proc.kill()
        raise AssertionError(f"{exc}:\n{proc.communicate()}") from None


def _processes_in(folder: Path) -> list[int]:
    found = []
    for p in psutil.process_iter(["pid", "cwd"]):
        cwd = p.info.get("cwd") or ""
        if cwd.startswith(str(folder)):
            found.append(p.info["pid"])
    return found


@pytest.mark.full
def test_a_node_that_dies_mid_experiment_is_run_again_elsewhere_pushed_once_its_runs_failed(ray_cluster, team, server):
    driver = team["driver"]
    proc = subprocess.Popen(
        sweep_cmd(ray_cluster, "--sizes", "16", "-S", f"train.epochs={MID_TRAINING_EPOCHS}"),
        cwd=driver,
        env=driver_env(team, server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = _wait_for_training(server, "rd-16", proc, stage="train_deep")
    dead_id = first.data.tags["mnist_codec.ray_node"]
    dead = next(w for w in ray_cluster.workers if w.node_id == dead_id)
    open_at_death = [r.info.run_id for r in sweep_runs(server, "rd-16") if r.info.status == "RUNNING"]
    ray_cluster.remove_node(dead, allow_graceful=False)
    ray_cluster.workers.remove(dead)
    ray_cluster.workers.append(ray_cluster.add_node(num_cpus=1, **ray_cluster.small))
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out + err

    # the dead node's clone holds no process: nothing of that attempt runs on
    dead_clones = [p for p in (Path(os.environ[guard.HOME_ENV])).glob(f"*/{dead_id[:16]}-*") if p.is_dir()]
    assert dead_clones and all(_processes_in(p) == [] for p in dead_clones)
    # run again on another node, pushed once, complete
    where = ran_on(driver, "rd-16")
    assert where["node"] != dead_id and where["node"] in {w.node_id for w in ray_cluster.workers}
    refs = node.remote_experiments(str(team["origin"]), git(driver, "rev-parse", "HEAD").strip())
    assert "rd-16" in refs
    assert "16" in {
        line.split(",")[1] for line in (driver / "reports" / "rate_distortion.csv").read_text().splitlines()
    }
    # the runs the dead attempt had open ended FAILED (those of stages it had finished stay
    # FINISHED); every run of the second attempt FINISHED
    runs = sweep_runs(server, "rd-16")
    on_dead = {r.info.run_id: r.info.status for r in runs if r.data.tags["mnist_codec.ray_node"] == dead_id}
    assert set(on_dead.values()) <= {"FAILED", "FINISHED"}  # none left RUNNING
    assert "FAILED" in {on_dead[run_id] for run_id in open_at_death}  # what training had open ended FAILED
    assert {r.info.status for r in runs if r.data.tags["mnist_codec.ray_node"] == where["node"]} == {"FINISHED"}


@pytest.mark.full
def test_ctrl_c_cancels_the_tasks_and_writes_nothing_in_the_driver(ray_cluster, team, server):
    driver = team["driver"]
    before = {p: p.read_bytes() for p in (driver / "reports").glob("rate_distortion.*")}
    status_before = git(driver, "status", "--porcelain")
    proc = subprocess.Popen(
        sweep_cmd(ray_cluster, "--sizes", "3", "-S", f"train.epochs={MID_TRAINING_EPOCHS}"),
        cwd=driver,
        env=driver_env(team, server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    _wait_for_training(server, "rd-3", proc, stage="train_deep")
    open_at_interrupt = [r.info.run_id for r in sweep_runs(server, "rd-3") if r.info.status == "RUNNING"]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err
    assert err.strip().splitlines()[-1].startswith("mnist-codec sweep: error: interrupted: 1 task(s) cancelled")
    time.sleep(3)
    clones = [p for p in Path(os.environ[guard.HOME_ENV]).glob("*/*") if p.is_dir()]
    assert all(_processes_in(p) == [] for p in clones)
    status = {r.info.run_id: r.info.status for r in sweep_runs(server, "rd-3")}
    assert set(status.values()) <= {"FAILED", "FINISHED"}  # none left RUNNING
    assert "FAILED" in {status[run_id] for run_id in open_at_interrupt}  # what training had open ended FAILED
    assert "rd-3" not in node.remote_experiments(str(team["origin"]), git(driver, "rev-parse", "HEAD").strip())
    assert {p: p.read_bytes() for p in (driver / "reports").glob("rate_distortion.*")} == before
    assert git(driver, "status", "--porcelain") == status_before


@pytest.mark.full
def test_a_node_that_cannot_reach_a_remote_or_the_server_says_which_from_which_node(
    team, server, tmp_path, monkeypatch
):
    monkeypatch.setenv(guard.HOME_ENV, str(tmp_path / "nodes"))
    commit = git(team["driver"], "rev-parse", "HEAD").strip()
    point = Point("rd-5", ("latent_dim=5",))
    gone = Job(str(tmp_path / "gone.git"), commit, server.url, "s1")
    out = node.run_point(gone, point, "f" * 56, host="vm-x")
    assert not out.ok and out.error.startswith(
        f"node vm-x ({'f' * 12}): cannot reach the git remote {tmp_path / 'gone.git'}: "
    )
    from services import free_port

    down = f"http://127.0.0.1:{free_port()}"
    out = node.run_point(Job(str(team["origin"]), commit, down, "s1"), point, "f" * 56, host="vm-x")
    assert not out.ok and out.error.startswith(f"node vm-x ({'f' * 12}): cannot reach the tracking server {down}: ")

    # a commit whose DVC remote is an S3 endpoint nobody listens on
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(team["origin"]), str(other)], check=True)
    dead_s3 = f"http://127.0.0.1:{free_port()}"
    for args in (
        ["remote", "add", "-f", "-d", "gone", "s3://mnist-codec/dvc"],
        ["remote", "modify", "gone", "endpointurl", dead_s3],
    ):
        subprocess.run([str(BIN / "dvc"), *args], cwd=other, env=project_env(other), check=True, capture_output=True)
    for args in (
        ["commit", "-qam", "a DVC remote nobody serves"],
        ["push", "-q", "origin", "HEAD:refs/heads/gone-remote"],
    ):
        git(other, *args)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # one try per file: the failure, not botocore's back-off, is the point
    job = Job(str(team["origin"]), git(other, "rev-parse", "HEAD").strip(), server.url, "s1")
    out = node.run_point(job, point, "f" * 56, host="vm-x")
    assert not out.ok and out.error.startswith(
        f"node vm-x ({'f' * 12}): cannot pull from the DVC remote: ERROR: failed to connect to s3"
    ), out.error
    assert dead_s3 in out.error


@pytest.mark.full
def test_a_tune_search_runs_its_trials_on_the_clusters_nodes(ray_cluster, server, tmp_path):
    """`mnist-codec tune --cluster` (make tune CLUSTER=...): the trials run on both worker nodes of
    the mini-cluster, each an MLflow run on the team's server under one tuning run, every node
    on 127.0.0.1; no socket of any process the test started leaves the loopback."""
    import optuna

    from mnist_codec.tuning import study as tuning_study

    spec = {
        "study": "on-cluster",
        "precision": "fp32",
        "budget": {"trials": 4, "time_s": 600, "cpus_per_trial": 1},
        "asha": {"max_epochs": 2, "grace_epochs": 1, "reduction_factor": 2},
        "fixed": {"data.train_limit": 600, "data.eval_limit": 200},
        "space": {"deep.hidden": {"choice": [[32], [64, 16]]}, "train.lr": {"float": [1.0e-4, 1.0e-2], "log": True}},
    }
    repo = project_copy(tmp_path / "repo", {"n_seeds": 1, "activation": ["relu"]})
    (repo / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**project_env(repo), "MLFLOW_TRACKING_URI": server.url}
    watch = LoopbackWatch()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_codec.cli",
            "tune",
            "--spec",
            "tiny.yaml",
            "--search-only",
            "--cluster",
            ray_cluster.address,
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    bad = watch.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert bad == [] and watch.checks > 3
    study = optuna.load_study(study_name="on-cluster", storage=f"sqlite:///{repo / '.tune/optuna.db'}")
    assert len(tuning_study.finished(study)) == 4
    assert study.user_attrs[tuning_study.RUNS_ATTR][0]["where"].startswith("cluster ")
    from mlflow import MlflowClient

    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name("mnist-codec")
    runs = [
        r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("mnist_codec.tune_study") == "on-cluster"
    ]
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 5 and len(trials) == 4
    workers = {n.node_id for n in ray_cluster.workers}
    assert {r.data.tags["mnist_codec.ray_node"] for r in trials} == workers  # both nodes ran trials
    assert {r.data.tags["mnist_codec.ray_node_ip"] for r in trials} == {"127.0.0.1"}
