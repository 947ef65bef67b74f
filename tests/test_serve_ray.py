"""The champion on Ray Serve (`make serve-ray`), started for real on 127.0.0.1 beside MLflow's
scoring server (`mnist-codec serve`), both serving a version the smoke run registered:

- JSON answers as MLflow's server gives them, npy answers equal to the model's in-process ones;
- every bad input gets the same 4xx from both servers, in JSON and in npy;
- every process Ray starts stays on the loopback;
- faults under load: a replica killed by its PID, a body over the size limit, a client that
  sends its body a byte a second, and Ctrl-C on `make serve-ray`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from mnist_codec.data.splits import load_split
from mnist_codec.loopback import RAY_LOOPBACK
from mnist_codec.serving.wire import npy_bytes

from services import BIN, Service, answers, free_port, gone, off_loopback, port_open, post, wait_for

pytestmark = pytest.mark.full

REPO = Path(__file__).resolve().parents[1]
BODY_TIMEOUT_S = 4  # the test config's: a slow body is cut off after it
MAX_BODY = 4 * 2**20  # the test config's: 4 MiB


def replica_pids(root: int) -> set[int]:
    """The Ray Serve replicas among a process's descendants."""
    pids = set()
    for p in tree(root):
        with contextlib.suppress(psutil.Error):
            if "ServeReplica" in " ".join(p.cmdline()):
                pids.add(p.pid)
    return pids


def read_answer(sock: socket.socket) -> bytes:
    """An HTTP answer read off a raw socket: its head and its Content-Length of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")), 0))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def tree(root: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(root)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
def served(smoke, tmp_path_factory):
    """`make serve-ray` (a test config: small body limit and timeout) and MLflow's server, both on
    the smoke run's store and its champion's version, each on a free port of 127.0.0.1."""
    import mlflow

    import smoke as run

    base = tmp_path_factory.mktemp("serve-ray")
    env = run.env_for(smoke)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    version = str(client.get_model_version_by_alias("mnist-codec", "champion").version)
    cfg = base / "serve.yaml"
    cfg.write_text(
        (REPO / "serve.yaml").read_text()
        + f"body_timeout_s: {BODY_TIMEOUT_S}\nmax_body_bytes: {MAX_BODY}\nbatch_wait_timeout_s: 0.005\n"
    )
    ray_port, mlflow_port = free_port(), free_port()
    ray_env = {**env, "MAKEFLAGS": ""}
    ray_env.pop("DVC_ROOT", None)
    # as in a user's shell: `make serve-ray` keeps Ray on the loopback by itself (the test
    # process sets it for the clusters it starts)
    for key in RAY_LOOPBACK:
        ray_env.pop(key, None)
    ray_env["RAY_TMPDIR"] = ray_tmp = tempfile.mkdtemp(prefix="mc-ray-")  # Ray's sessions, removed at the end
    ray_server = Service(
        "make serve-ray",
        ["make", "--no-print-directory", "-C", str(REPO), "serve-ray", f"MODEL={version}",
         f"RAY_SERVE_PORT={ray_port}", f"RAY_SERVE_CONFIG={cfg}", "CLUSTER="],
        base / "ray.log", env=ray_env,
    )  # fmt: skip
    mlflow_server = Service(
        "mnist-codec serve",
        [str(BIN / "mnist-codec"), "serve", "--model", version, "--port", str(mlflow_port)],
        base / "mlflow.log", env=env,
    )  # fmt: skip
    started: set[int] = set()
    try:
        ray_server.wait_until(lambda: answers(f"http://127.0.0.1:{ray_port}/ping"), timeout=240)
        mlflow_server.wait_until(lambda: answers(f"http://127.0.0.1:{mlflow_port}/ping"), timeout=120)
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        model = mlflow.pyfunc.load_model(f"models:/mnist-codec/{version}")
        started = {p.pid for p in tree(ray_server.pid)}
        yield {
            "ray": f"http://127.0.0.1:{ray_port}",
            "mlflow": f"http://127.0.0.1:{mlflow_port}",
            "ray_port": ray_port,
            "service": ray_server,
            "model": model,
            "latent": int(model.unwrap_python_model().latent_dim),
            "x": load_split(smoke / "data/processed", "eval")[0][:64],
        }
    finally:
        started |= {p.pid for p in tree(ray_server.pid)}
        ray_server.stop(timeout=60)
        mlflow_server.stop()
        for pid in started:  # anything Ray's own shutdown left
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_json_and_npy_answer_as_the_model_does_and_json_as_mlflows_server(served):
    x, model, latent = served["x"][:5], served["model"], served["latent"]
    codes = model.predict(x, params={"mode": "encode"})
    for mode, rows in (("reconstruct", x), ("encode", x), ("decode", codes)):
        want = model.predict(rows, params={"mode": mode})
        doc = json.dumps({"inputs": rows.tolist(), "params": {"mode": mode}}).encode()
        answers = {}
        for name in ("ray", "mlflow"):
            status, body, media = post(f"{served[name]}/invocations", doc, "application/json")
            assert status == 200 and media.startswith("application/json"), (name, body[:300])
            answers[name] = np.asarray(json.loads(body)["predictions"], dtype=np.float32)
        assert answers["ray"].shape == answers["mlflow"].shape == want.shape
        assert np.allclose(answers["ray"], answers["mlflow"], rtol=0, atol=1e-5)
        status, body, media = post(f"{served['ray']}/invocations?mode={mode}", npy_bytes(rows), "application/x-npy")
        assert status == 200 and media == "application/x-npy"
        got = np.load(io.BytesIO(body), allow_pickle=False)
        assert got.dtype == np.float32 and got.shape == (len(rows), 784 if mode != "encode" else latent)
        assert np.allclose(got, want, rtol=0, atol=1e-5)
    # uint8 pixels, as a PNG holds them, read as value/255
    as_bytes = np.round(x * 255).astype(np.uint8)
    status, body, _ = post(f"{served['ray']}/invocations", npy_bytes(as_bytes), "application/x-npy")
    want = model.predict(as_bytes.astype(np.float32) / 255)
    assert status == 200 and np.allclose(np.load(io.BytesIO(body)), want, rtol=0, atol=1e-5)


BAD_JSON = [
    b'{"inputs": [[0.5, 0.5]]}',  # shape
    json.dumps({"inputs": [[2.0] * 784]}).encode(),  # range
    json.dumps({"inputs": [[0.5] * 784], "params": {"mode": "zip"}}).encode(),  # mode
    json.dumps({"inputs": [[0.5] * 784], "params": {"mode": "decode"}}).encode(),  # a code's width
    b"{not json",  # malformed
]


# Over the rows limit: as npy below (10,001 rows of JSON text are over the test's body limit).
@pytest.mark.parametrize("k", range(len(BAD_JSON)), ids=["shape", "range", "mode", "width", "malformed"])
def test_bad_json_gets_mlflows_status_from_both_servers(served, k):
    statuses = {}
    for name in ("ray", "mlflow"):
        status, body, _ = post(f"{served[name]}/invocations", BAD_JSON[k], "application/json", timeout=60)
        statuses[name] = status
        assert "message" in json.loads(body), body[:300]
    assert statuses["ray"] == statuses["mlflow"] == 400, statuses


@pytest.mark.parametrize(
    ("body", "query", "status", "message"),
    [
        (npy_bytes(np.zeros((2, 783), np.float32)), "", 400, "expected 784 pixels per row, got 783"),
        (npy_bytes(np.zeros((2, 784), np.int64)), "", 400, "dtype int64 is not accepted"),
        (npy_bytes(np.full((2, 784), 1.5, np.float32)), "", 400, "pixels must lie in [0, 1]"),
        (npy_bytes(np.zeros((2, 784), np.float32)), "?mode=zip", 400, "mode 'zip' is not one of"),
        (b"\x93NUMPY garbage", "", 400, "not a readable .npy array"),
        (npy_bytes(np.zeros((10_001, 100), np.uint8)), "", 400, "over the limit of 10000 per request"),
    ],
)
def test_bad_npy_gets_the_same_4xx_with_mlflows_error_body(served, body, query, status, message):
    got, text, media = post(f"{served['ray']}/invocations{query}", body, "application/x-npy")
    doc = json.loads(text)
    assert got == status and media.startswith("application/json") and message in doc["message"], doc


def test_every_process_ray_started_stays_on_the_loopback(served):
    pids = {p.pid for p in tree(served["service"].pid)}
    assert len(replica_pids(served["service"].pid)) >= 1
    listening = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True).stdout
    assert f":{served['ray_port']} " in listening
    assert any(f"pid={p}," in listening for p in pids), "no Ray process listens: the check would prove nothing"
    assert off_loopback(pids) == []
    # every Ray node started at 127.0.0.1, not at this machine's network address
    addresses = set()
    for p in tree(served["service"].pid):
        with contextlib.suppress(psutil.Error):
            for arg in p.cmdline():
                if arg.startswith(("--node-ip-address=", "--node_ip_address=")):
                    addresses.add(arg.split("=", 1)[1])
    assert addresses == {"127.0.0.1"}


def test_with_a_cluster_named_it_deploys_there_and_ctrl_c_deletes_only_the_application(smoke, tmp_path):
    """`mnist-codec serve --ray --cluster ADDRESS` (make serve-ray CLUSTER=...) on Ray's mini-cluster:
    the replicas run on the cluster's worker node, the proxy answers on 127.0.0.1, and Ctrl-C
    deletes the application (the port closes) while the cluster runs on."""
    import mlflow
    from ray.cluster_utils import Cluster

    import smoke as run

    env = {**run.env_for(smoke), **RAY_LOOPBACK}  # the cluster's nodes' own
    env.pop("DVC_ROOT", None)
    version = str(
        mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_model_version_by_alias("mnist-codec", "champion").version
    )
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # the module's servers among them
    small = {"object_store_memory": 80 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **small})
    cluster.add_node(num_cpus=2, **small)
    cluster.wait_for_nodes()
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before  # the cluster's nodes
    port = free_port()
    driver = Service(
        "serve --ray --cluster",
        [str(BIN / "mnist-codec"), "serve", "--ray", "--cluster", cluster.address, "--model", version,
         "--port", str(port)],
        tmp_path / "driver.log", env=env, cwd=REPO,
    )  # fmt: skip
    try:
        driver.wait_until(lambda: "replica(s) on the Ray cluster at" in driver.tail(), timeout=240)
        assert answers(f"http://127.0.0.1:{port}/ping")
        x = load_split(smoke / "data/processed", "eval")[0][:3]
        status, body, _ = post(f"http://127.0.0.1:{port}/invocations", npy_bytes(x), "application/x-npy")
        assert status == 200 and np.load(io.BytesIO(body)).shape == (3, 784)
        # the replicas are the cluster's processes, not the driver's
        assert not replica_pids(driver.pid)
        assert any(replica_pids(pid) for pid in started)
        os.killpg(driver.pid, signal.SIGINT)
        driver.proc.wait(timeout=90)
        wait_for(lambda: not port_open(port), 30, f"port {port} closing after Ctrl-C")
        nodes = [cluster.head_node, *cluster.worker_nodes]
        assert all(n.remaining_processes_alive() for n in nodes), "Ctrl-C stopped the cluster's nodes"
        assert not any(replica_pids(pid) for pid in started)
    finally:
        driver.stop(timeout=30)
        everything = started | ({p.pid for p in psutil.Process().children(recursive=True)} - before)
        session = cluster.head_node.get_session_dir_path()  # the nodes' logs and sockets
        cluster.shutdown()
        shutil.rmtree(session, ignore_errors=True)
        for pid in everything:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class Load:
    """Threads posting single images until stopped; each answer's status, time and correctness."""

    def __init__(self, url: str, x: np.ndarray, want: np.ndarray, threads: int = 4, timeout: float = 20):
        self.url, self.x, self.want, self.timeout = url, x, want, timeout
        self.results: list[tuple[int, float, bool, bool]] = []  # status, seconds, right, retried-ok
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(threads)]
        for t in self._threads:
            t.start()

    def _one(self, i: int) -> tuple[int, float, bool]:
        start = time.monotonic()
        try:
            status, body, _ = post(self.url, npy_bytes(self.x[i : i + 1]), "application/x-npy", timeout=self.timeout)
        except OSError:  # a timeout or a dropped connection: the client sees no answer
            return -1, time.monotonic() - start, False
        right = status == 200 and np.allclose(np.load(io.BytesIO(body)), self.want[i : i + 1], rtol=0, atol=1e-5)
        return status, time.monotonic() - start, right

    def _run(self, k: int) -> None:
        i = k
        while not self._stop.is_set():
            i = (i + 1) % len(self.x)
            status, seconds, right = self._one(i)
            retried = False
            if status >= 500:  # what a client does with a 5xx: try again
                retried = self._one(i)[0] == 200
            self.results.append((status, seconds, right, retried))

    def stop(self) -> list[tuple[int, float, bool, bool]]:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        return self.results


def test_a_replica_killed_under_load_is_replaced_and_no_answer_is_wrong(served):
    x = served["x"]
    want = served["model"].predict(x)
    root = served["service"].pid
    before = replica_pids(root)
    assert len(before) >= 2, "the test needs two replicas: one to kill, one to keep answering"
    load = Load(f"{served['ray']}/invocations", x, want)
    time.sleep(3)
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int] | None:  # Ray starts another replica in its place
        now = replica_pids(root)
        return now if victim not in now and len(now) == len(before) else None

    try:
        wait_for(replaced, 90, f"a replica in place of {victim}", every=0.5)
        time.sleep(3)
    finally:
        results = load.stop()
    statuses = [r[0] for r in results]
    assert -1 not in statuses, "a request hung past its timeout or lost its connection"
    assert all(s == 200 or s >= 500 for s in statuses), sorted(set(statuses))
    assert all(right for s, _, right, _ in results if s == 200), "a 200 answer was wrong"
    assert all(retried for s, _, _, retried in results if s >= 500), "a 5xx request failed again when retried"
    assert max(r[1] for r in results) < 20 and statuses.count(200) > 50


def test_a_body_over_the_limit_is_refused_without_starving_others(served):
    x, want = served["x"], served["model"].predict(served["x"])
    load = Load(f"{served['ray']}/invocations", x, want, threads=2)
    try:
        # declared too large: refused before the body is read (only its first 64 KiB is sent)
        with socket.create_connection(("127.0.0.1", served["ray_port"]), timeout=20) as sock:
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\n"
                + f"Content-Length: {MAX_BODY * 8}\r\n\r\n".encode()
                + b"\x93NUMPY" + b"\0" * 65_530
            )  # fmt: skip
            start = time.monotonic()
            answer = read_answer(sock)
            assert answer.startswith(b"HTTP/1.1 413") and time.monotonic() - start < 10, answer[:200]
            assert b"over the limit of 4,194,304" in answer
        # chunked, no length declared: refused once the limit is crossed
        big = npy_bytes(np.zeros((MAX_BODY // 3136 + 10, 784), np.float32))
        chunks = iter([big[i : i + 2**20] for i in range(0, len(big), 2**20)])
        status, body, _ = post(f"{served['ray']}/invocations", chunks, "application/x-npy")  # type: ignore[arg-type]
        assert status == 413 and b"over the limit" in body
    finally:
        results = load.stop()
    assert results and all(s == 200 and right for s, _, right, _ in results), sorted({r[0] for r in results})


def test_a_client_sending_a_byte_a_second_is_cut_off_and_others_are_served(served):
    x, want = served["x"], served["model"].predict(served["x"])
    load = Load(f"{served['ray']}/invocations", x, want, threads=2)
    body = npy_bytes(x[:1])
    try:
        with socket.create_connection(("127.0.0.1", served["ray_port"]), timeout=BODY_TIMEOUT_S + 20) as sock:
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            start, sent = time.monotonic(), 0
            sock.settimeout(1.0)  # each wait for an answer paces the next byte: one a second
            while time.monotonic() - start < BODY_TIMEOUT_S + 15:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.send(body[sent : sent + 1])
                    sent += 1
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except TimeoutError:
                    continue
            waited = time.monotonic() - start
            sock.settimeout(10)
            answer = read_answer(sock)
    finally:
        results = load.stop()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"did not arrive within" in answer and BODY_TIMEOUT_S - 1 <= waited <= BODY_TIMEOUT_S + 6
    assert sent < len(body)
    # the others were served all along, and quickly
    assert len(results) > 20 and all(s == 200 and right for s, _, right, _ in results)
    assert np.percentile([r[1] for r in results], 99) < 2.0


def test_ctrl_c_on_make_serve_ray_stops_ray_and_every_replica(served):
    service = served["service"]
    pids = {p.pid for p in tree(service.pid)}
    assert replica_pids(service.pid) and len(pids) > 4
    os.killpg(service.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends: the foreground group
    service.proc.wait(timeout=90)
    left = gone(pids, 60)
    assert not left, [" ".join(psutil.Process(p).cmdline())[:120] for p in left]
    assert not port_open(served["ray_port"])
    assert "stopping" in service.tail()
