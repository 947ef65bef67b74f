"""Working as a team, against real services on 127.0.0.1: a PostgreSQL cluster behind
``mnist-codec server`` (MLflow's tracking server with its artifact proxy), a DVC directory
remote, moto's S3-compatible server standing in for S3, and a bare git remote shared by
clones that act as separate machines.

Slow: every test runs DVC and the pipeline, on a tiny profile, in throw-away clones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import TINY, drain_queue, project_copy, project_env
from services import Postgres, S3Server, TrackingServer, wait_for

pytestmark = pytest.mark.full

OUTPUTS = (
    "data/raw/train-images-idx3-ubyte.gz",
    "data/processed/train_x.npy",
    "models/pca.npz",
    "models/ae/index.json",
    "models/deep/deep_relu/seed1.pt",
    "reports/metrics.json",
    "reports/report.html",
)


def run(
    root: Path, *cmd: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess:
    full = project_env(root)
    full.update(env or {})
    proc = subprocess.run(cmd, cwd=root, env=full, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def clone(origin: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(dest)], check=True, capture_output=True)
    return dest


def server_runs(url: str, **filters: str) -> tuple[list, object]:
    """(runs of the mnist-codec experiment on the server, client), optionally filtered by tags."""
    import mlflow

    client = mlflow.MlflowClient(url)
    exp = client.get_experiment_by_name("mnist-codec")
    if exp is None:
        return [], client
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    for key, value in filters.items():
        runs = [r for r in runs if r.data.tags.get(f"mnist_codec.{key}") == value]
    return runs, client


def histories_complete(client, runs, epochs: int) -> None:
    """Every seed run of a training stage holds every epoch's point of both curves."""
    seed_runs = [
        r
        for r in runs
        if r.data.tags.get("mnist_codec.stage") in ("train_ae", "train_deep") and "mlflow.parentRunId" in r.data.tags
    ]
    assert seed_runs
    for r in seed_runs:
        for metric in ("train_loss", "eval_loss"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, metric)] == list(range(1, epochs + 1))


# --- the shared pieces -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    pg = Postgres()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    srv = TrackingServer(tmp_path_factory.mktemp("server"), backend=postgres.create_database("mlflow"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> dict[str, Path]:
    """A bare git remote holding the project (tiny profile) with a DVC directory remote set
    as its default, as a team would commit it."""
    base = tmp_path_factory.mktemp("team")
    origin, store = base / "origin.git", base / "dvc-store"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    seed = project_copy(base / "seed", TINY)
    run(seed, "dvc", "remote", "add", "-d", "team", str(store))
    run(seed, "git", "add", ".dvc/config")
    run(seed, "git", "commit", "-qm", "DVC remote for the team")
    run(seed, "git", "branch", "-M", "main")
    run(seed, "git", "remote", "add", "origin", str(origin))
    run(seed, "git", "push", "-q", "origin", "main")
    return {"base": base, "origin": origin, "store": store}


@pytest.fixture(scope="module")
def published(team, server) -> Path:
    """Machine A ran the pipeline against the server, committed dvc.lock, pushed git and DVC."""
    a = clone(team["origin"], team["base"] / "machine-a")
    proc = run(a, "dvc", "repro", env={"MLFLOW_TRACKING_URI": server.url})
    assert "Running stage 'train_deep'" in proc.stdout
    run(a, "git", "add", "-A")
    run(a, "git", "commit", "-qm", "a run of the pipeline")
    run(a, "git", "push", "-q", "origin", "main")
    run(a, "dvc", "push")
    return a


# --- 1. the tracking server ---------------------------------------------------------------------


def test_the_pipeline_logs_runs_metrics_artifacts_and_models_through_the_server(published, server):
    runs, client = server_runs(server.url, dvc_exp="workspace")
    stages = sorted({r.data.tags["mnist_codec.stage"] for r in runs})
    assert stages == ["evaluate", "pca", "train_ae", "train_deep"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    histories_complete(client, runs, epochs=2)
    # artifacts went through the proxy into the server's store, none into the client's checkout
    exp = client.get_experiment_by_name("mnist-codec")
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on its runs
    for r in runs:
        if r.data.tags["mnist_codec.stage"] != "evaluate":
            assert r.info.artifact_uri.startswith("mlflow-artifacts:")
        if r.data.tags["mnist_codec.stage"] != "evaluate" and "mlflow.parentRunId" not in r.data.tags:
            assert "reconstructions.png" in {a.path for a in client.list_artifacts(r.info.run_id)}  # PCA, each codec
    stored = {p.name for p in (server.folder / "artifacts").rglob("*") if p.is_file()}
    assert {"reconstructions.png", "loss_curve.png", "MLmodel"} <= stored, stored
    assert not (published / "mlruns").exists() and not (published / "mlflow.db").exists()
    # the registry: every model registered, the champion alias set, served from the server
    versions = client.search_model_versions("name = 'mnist-codec'")
    assert len(versions) == 1 + 2 + 2  # PCA, the AE's two seeds, the deep AE's two seeds
    champion = client.get_model_version_by_alias("mnist-codec", "champion")
    assert champion.tags["mnist_codec.fingerprint"]
    digit = published.parent / "digit.png"
    run(
        published,
        sys.executable,
        "-c",
        "import sys; from mnist_codec.data.splits import load_split; "
        "from mnist_codec.serving.digits import write_digit_png; "
        "write_digit_png(sys.argv[1], load_split('data/processed', 'eval')[0][0])",
        str(digit),
    )
    enc = run(
        published,
        str(Path(sys.executable).parent / "mnist-codec"),
        "encode",
        str(digit),
        env={"MLFLOW_TRACKING_URI": server.url},
    )
    assert len(enc.stdout.split()) == 32
    assert "models:/mnist-codec@champion" in enc.stderr
    # machine and experiment are on every run
    assert {r.data.tags["mnist_codec.host"] for r in runs} == {os.uname().nodename}
    # the server runs no MLflow background job workers (GenAI evaluation, unused here)
    started = [" ".join(p.cmdline()) for p in psutil.Process(server.pid).children(recursive=True)]
    assert started and not [c for c in started if "huey" in c], started


# --- 2. DVC remotes --------------------------------------------------------------------------------


def test_dvc_pull_in_another_clone_brings_every_output_and_repro_runs_nothing(published, team):
    b = clone(team["origin"], team["base"] / "machine-b")
    run(b, "dvc", "pull")
    for rel in OUTPUTS:
        assert (b / rel).read_bytes() == (published / rel).read_bytes(), rel
    assert "Data and pipelines are up to date" in run(b, "dvc", "status").stdout
    repro = run(b, "dvc", "repro")
    assert "Running stage" not in repro.stdout, repro.stdout


def test_an_interrupted_push_to_s3_completes_when_run_again(published, team):
    s3 = S3Server(team["base"] / "s3")
    try:
        s3.client().create_bucket(Bucket="mnist-codec")
        env = s3.env()
        run(published, "dvc", "remote", "add", "s3", "s3://mnist-codec/dvc")
        run(published, "dvc", "remote", "modify", "s3", "endpointurl", s3.url)

        def count() -> int:
            return s3.client().list_objects_v2(Bucket="mnist-codec").get("KeyCount", 0)

        full = project_env(published)
        full.update(env)
        push = subprocess.Popen(
            ["dvc", "push", "-r", "s3", "-j", "1"],
            cwd=published,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: count() > 0 or push.poll() is not None, 120, "the push's first object", every=0.02)
        os.killpg(push.pid, signal.SIGKILL)  # part-way: some objects are there, not all
        push.wait(30)
        partial = count()
        assert push.returncode == -signal.SIGKILL and partial > 0
        status = run(published, "dvc", "status", "-c", "-r", "s3", env=env).stdout
        assert "new:" in status  # what the killed push did not send
        run(published, "dvc", "push", "-r", "s3", env=env)
        total = count()
        assert total > partial
        assert "Cache and remote 's3' are in sync" in run(published, "dvc", "status", "-c", "-r", "s3", env=env).stdout
        # another machine pulls from the S3 remote alone
        c = clone(team["origin"], team["base"] / "machine-s3")
        run(c, "dvc", "remote", "add", "s3", "s3://mnist-codec/dvc")
        run(c, "dvc", "remote", "modify", "s3", "endpointurl", s3.url)
        run(c, "dvc", "pull", "-r", "s3", env=env)
        for rel in OUTPUTS:
            assert (c / rel).read_bytes() == (published / rel).read_bytes(), rel
        assert "Data and pipelines are up to date" in run(c, "dvc", "status").stdout
        print(f"interrupted push: {partial} of {total} objects sent before SIGKILL")
    finally:
        s3.stop()


# --- 3. experiments that travel -------------------------------------------------------------------


def test_experiments_run_on_two_machines_are_pulled_compared_and_applied_on_a_third(published, team, server):
    env = {"MLFLOW_TRACKING_URI": server.url}
    machines = {}
    for name, seed in (("seed-7", 7), ("seed-8", 8)):
        m = clone(team["origin"], team["base"] / f"machine-{name}")
        run(m, "dvc", "pull")  # the shared stages come from the remote, not re-run
        proc = run(m, "dvc", "exp", "run", "-S", f"seed={seed}", "-n", name, env=env)
        assert "Running stage 'pca'" not in proc.stdout and "Running stage 'train_ae'" in proc.stdout
        run(m, "dvc", "exp", "push", "origin", name)
        machines[name] = m
    c = clone(team["origin"], team["base"] / "machine-c")
    for name in machines:
        run(c, "dvc", "exp", "pull", "origin", name)
    shown = json.loads(run(c, "dvc", "exp", "show", "--json").stdout)
    names = {e["name"] for rev in shown for e in (rev.get("experiments") or []) for e in e.get("revs", [])}
    assert names >= {"seed-7", "seed-8"}, names
    seeds = {
        r["name"]: r["data"]["params"]["params.yaml"]["data"]["seed"]
        for rev in shown
        for e in (rev.get("experiments") or [])
        for r in e.get("revs", [])
    }
    assert seeds["seed-7"] == 7 and seeds["seed-8"] == 8
    run(c, "dvc", "exp", "apply", "seed-7")
    run(c, "dvc", "pull")
    a = machines["seed-7"]
    for rel in ("models/ae/seed0.pt", "models/deep/deep_relu/seed1.pt", "reports/metrics.json"):
        assert (c / rel).read_bytes() == (a / rel).read_bytes(), rel
    repro = run(c, "dvc", "repro")
    assert "Running stage" not in repro.stdout, repro.stdout  # its models came from the remote: no retraining
    # both experiments' runs are in the one server, told apart by experiment name, with their host
    for name in machines:
        runs, _client = server_runs(server.url, dvc_exp=name)
        assert sorted({r.data.tags["mnist_codec.stage"] for r in runs}) == ["evaluate", "train_ae", "train_deep"]
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert all(r.data.tags["mnist_codec.host"] for r in runs)


def test_two_queue_workers_against_one_server_lose_nothing(published, team, server):
    env = {"MLFLOW_TRACKING_URI": server.url}
    m = clone(team["origin"], team["base"] / "machine-queue")
    run(m, "dvc", "pull")
    for seed in (11, 12):
        run(m, "dvc", "exp", "run", "--queue", "-S", f"seed={seed}", "-n", f"queued-{seed}", env=env)
    run(m, "dvc", "queue", "start", "-j", "2", env=env)
    status = drain_queue(m, env)
    assert list(status.values()).count("Success") == 2, status
    for seed in (11, 12):
        runs, client = server_runs(server.url, dvc_exp=f"queued-{seed}")
        by_stage = {}
        for r in runs:
            by_stage.setdefault(r.data.tags["mnist_codec.stage"], []).append(r)
        # the AE and the deep AE: a parent and a child per seed each; one evaluation
        assert {k: len(v) for k, v in by_stage.items()} == {"train_ae": 3, "train_deep": 3, "evaluate": 1}
        assert {r.info.status for r in runs} == {"FINISHED"}
        histories_complete(client, runs, epochs=2)


# --- 4. the server gone while a stage logs ---------------------------------------------------------

FAULT_EPOCHS = 8  # on 30,000 images: about a second an epoch, so the server goes away mid-training


@pytest.fixture(scope="module")
def fault_server(postgres, tmp_path_factory):
    srv = TrackingServer(tmp_path_factory.mktemp("fault-server"), backend=postgres.create_database("faults"))
    srv.postgres_password, srv.postgres_port = postgres.password, postgres.port
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fault_repo(published, team) -> Path:
    f = clone(team["origin"], team["base"] / "machine-faults")
    run(f, "dvc", "pull")
    return f


def set_params(root: Path, **train) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(train)
    params["data"]["train_limit"] = 30000
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def start_stage(root: Path, url: str, retries: int) -> subprocess.Popen:
    env = project_env(root)
    env.update(
        MLFLOW_TRACKING_URI=url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES=str(retries),
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER="0.5",
    )
    return subprocess.Popen(
        ["dvc", "repro", "train_deep"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_first_point(url: str, proc: subprocess.Popen, exclude: set[str]) -> list:
    """The train_deep seed runs once one has logged its first epoch (runs in ``exclude`` skipped)."""

    def logged() -> list | None:
        runs, client = server_runs(url, stage="train_deep")
        seed_runs = [r for r in runs if "mlflow.parentRunId" in r.data.tags and r.info.run_id not in exclude]
        return seed_runs if any(client.get_metric_history(r.info.run_id, "eval_loss") for r in seed_runs) else None

    try:
        return wait_for(logged, 300, "a first epoch logged", proc, every=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}:\n{proc.communicate()[0] if proc.poll() is not None else ''}") from None


def test_a_server_restarted_within_the_retry_window_loses_no_metric_point(fault_repo, fault_server):
    set_params(fault_repo, epochs=FAULT_EPOCHS)
    proc = start_stage(fault_repo, fault_server.url, retries=6)  # about 65 s of retries
    seed_runs = wait_for_first_point(fault_server.url, proc, set())
    expected = len(seed_runs) * 2 * FAULT_EPOCHS
    fault_server.stop()  # SIGTERM by its PID
    down = time.monotonic()
    import mlflow

    client = mlflow.MlflowClient(
        f"postgresql://mlflow:{fault_server.postgres_password}@127.0.0.1:{fault_server.postgres_port}/faults"
    )  # the database itself, while the server is down
    before_stop = sum(
        len(client.get_metric_history(r.info.run_id, m)) for r in seed_runs for m in ("train_loss", "eval_loss")
    )
    assert 0 < before_stop < expected  # stopped mid-training
    time.sleep(max(0.0, 3 - (time.monotonic() - down)))
    fault_server.start()  # the same port and store
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    retries = out.count("Retrying (")
    assert retries >= 1, out  # the client did wait for the server
    runs, client = server_runs(fault_server.url, stage="train_deep")
    assert {r.info.status for r in runs} == {"FINISHED"}
    logged = sum(
        len(client.get_metric_history(r.info.run_id, m)) for r in seed_runs for m in ("train_loss", "eval_loss")
    )
    assert logged == expected
    histories_complete(client, runs, epochs=FAULT_EPOCHS)
    print(
        f"server down during training: {before_stop}/{expected} points when stopped, {logged}/{expected} "
        f"at the end, {retries} retries seen"
    )


def test_a_server_gone_past_the_window_fails_the_stage_clearly_and_its_runs_end_failed(fault_repo, fault_server):
    before = {r.info.run_id for r in server_runs(fault_server.url)[0]}
    set_params(fault_repo, epochs=FAULT_EPOCHS + 1)
    proc = start_stage(fault_repo, fault_server.url, retries=1)
    wait_for_first_point(fault_server.url, proc, before)
    fault_server.stop()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert f"train_deep: error: the MLflow tracking server {fault_server.url} did not answer" in out, out
    assert "Traceback" not in out
    journal = fault_repo / "mlruns" / ".unterminated.jsonl"
    assert (fault_repo / "mlruns").is_dir() and [p.name for p in (fault_repo / "mlruns").iterdir()] == [journal.name]
    left_open = [json.loads(line)["run_id"] for line in journal.read_text().splitlines()]
    assert left_open
    fault_server.start()
    runs, _ = server_runs(fault_server.url, stage="train_deep")
    assert {r.info.status for r in runs if r.info.run_id in left_open} == {"RUNNING"}  # the server never heard
    # the next stage that reaches the server ends them FAILED, then does its own work (one epoch)
    set_params(fault_repo, epochs=1)
    proc = start_stage(fault_repo, fault_server.url, retries=6)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    runs, _client = server_runs(fault_server.url, stage="train_deep")
    status = {r.info.run_id: r.info.status for r in runs}
    assert {status[i] for i in left_open} == {"FAILED"}
    new = [r for r in runs if r.info.run_id not in before and r.info.run_id not in left_open]
    assert new and {r.info.status for r in new} == {"FINISHED"}
    assert journal.read_text() == ""


# --- 5. logins ---------------------------------------------------------------------------------------

ADMIN_PASSWORD = "team-admin-" + "x7Qp2Lm9"


def http_status(url: str, user: str | None = None, password: str | None = None, body: dict | None = None) -> int:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode() if body is not None else None, method="POST" if body is not None else "GET"
    )
    req.add_header("Content-Type", "application/json")
    if user:
        req.add_header("Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_logins_anonymous_is_refused_a_user_without_permission_cannot_write(published, team, tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth-server")
    srv = TrackingServer(folder, auth=True, env={**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        search = f"{srv.url}/api/2.0/mlflow/experiments/search?max_results=10"
        assert http_status(search) == 401  # anonymous
        assert http_status(search, "admin", "password1234") == 401  # no default password is in place
        assert http_status(search, "admin", ADMIN_PASSWORD) == 200
        from mlflow.server import get_app_client

        os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
        try:
            admin = get_app_client("basic-auth", tracking_uri=srv.url)
            admin.create_user("alice", "alice-password-1")
            admin.create_user("bob", "bob-password-22")
        finally:
            for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(k)
        u = clone(team["origin"], team["base"] / "machine-auth")
        run(u, "dvc", "pull")

        def login(user: str, pw: str) -> dict[str, str]:
            return {"MLFLOW_TRACKING_URI": srv.url, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": pw}

        # alice logs the PCA stage from the standard environment variables; she creates the
        # experiment and the registered model, so she manages them
        run(u, "dvc", "repro", "--force", "pca", env=login("alice", "alice-password-1"))
        runs, _ = server_runs_as(srv.url, "alice", "alice-password-1")
        assert [r.data.tags["mnist_codec.stage"] for r in runs] == ["pca"]
        assert runs[0].info.status == "FINISHED"
        # bob may read (default READ) but not write to alice's experiment
        run_id = runs[0].info.run_id
        assert http_status(f"{srv.url}/api/2.0/mlflow/runs/get?run_id={run_id}", "bob", "bob-password-22") == 200
        metric = {"run_id": run_id, "key": "x", "value": 1.0, "timestamp": 0, "step": 0}
        assert http_status(f"{srv.url}/api/2.0/mlflow/runs/log-metric", "bob", "bob-password-22", metric) == 403
        assert http_status(f"{srv.url}/api/2.0/mlflow/runs/log-metric", "bob", "wrong-password", metric) == 401
        denied = run(u, "dvc", "repro", "--force", "pca", env=login("bob", "bob-password-22"), check=False)
        assert denied.returncode != 0
        assert "pca: error: the MLflow tracking server" in denied.stderr and "refused user 'bob'" in denied.stderr, (
            denied.stderr
        )
        assert "Traceback" not in denied.stderr
        wrong = run(u, "dvc", "repro", "--force", "pca", env=login("bob", "wrong-password"), check=False)
        assert wrong.returncode != 0 and "refused the login" in wrong.stderr, wrong.stderr
    finally:
        srv.stop()


def server_runs_as(url: str, user: str, password: str) -> tuple[list, object]:
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    try:
        return server_runs(url)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
