"""The champion served under load: Ray Serve (``make serve-ray``) beside MLflow's scoring server
(``make serve-model``), both on 127.0.0.1 at once, loaded by Locust (``benchmarks/locustfile.py``),
headless, each run bounded in time and in requests. Run by ``bench_pipeline.py --only serve``
(``make bench ONLY=serve``), after ``make repro``.

Cases, each against both servers in turn:

- single-image requests (JSON) at 1, 8 and 32 concurrent users;
- 256-image requests as JSON and as ``application/x-npy`` (MLflow's server takes no npy: its
  answer to one is recorded instead);
- Ray Serve's batching settings, each on a server of its own first (what ``serve.yaml`` chose
  from);
- a soak: both servers at once, single images at a steady rate for ``--soak-s`` seconds (at least
  600 for the targets), each server's processes' memory sampled every 5 s.

Every answer is checked against the in-process model's, during the load. Beside them: the model
called in-process (its own speed), and Ray Serve's request path without HTTP (a DeploymentHandle
called by 32 concurrent tasks), the floor under any HTTP figure of Ray's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from mnist_codec.serving.wire import npy_bytes

from .common import ROOT, section_head
from services import Service, answers, free_port, post

HERE = Path(__file__).resolve().parent
LOCUSTFILE = ROOT / "benchmarks" / "locustfile.py"
POOL = 1024  # test images the requests are drawn from
SINGLE_USERS = (1, 8, 32)
from .serve_report import BATCH_USERS  # noqa: E402 -- the report names the cases by it


class Server(Service):
    """A server on 127.0.0.1:``port`` in its own session, stopped by its PID with SIGINT, as Ctrl-C."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict, log: Path):
        super().__init__(name, cmd, log, env=env)
        self.port, self.url = port, f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 240) -> None:
        try:
            self.wait_until(lambda: answers(f"{self.url}/ping"), timeout)
        except RuntimeError:
            raise SystemExit(f"serve: {self.name} did not start; see {self.log_path}") from None

    def rss_mib(self) -> float:
        import psutil

        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total / 2**20

    def stop(self, timeout: float = 60, sig: int = signal.SIGINT) -> None:
        super().stop(timeout, sig)


def locust(
    case: str,
    server: Server,
    users: int,
    seconds: float,
    max_requests: int,
    work: Path,
    env: dict,
    user_rps: float | None = None,
) -> dict:
    """One headless Locust run; its tally (latencies in ms, counts, seconds)."""
    out = work / f"{case}-{server.name}-{users}.json"
    run_env = {
        **env,
        "SERVE_CASE": case,
        "SERVE_EXPECTED": str(work / "expected.npz"),
        "SERVE_OUT": str(out),
        "SERVE_MAX_REQUESTS": str(max_requests),
        **({"SERVE_USER_RPS": str(user_rps)} if user_rps else {}),
    }
    cmd = [
        str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s", "--stop-timeout", "30",
        "--host", server.url, "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=run_env, cwd=work, capture_output=True, text=True, timeout=seconds + 120)
    if not out.exists():
        raise SystemExit(f"serve: locust wrote no result for {case} on {server.name}:\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def summary(tally: dict, rows: int) -> dict:
    lat = np.asarray(tally["latency_ms"] or [np.nan])
    seconds = tally["seconds"] or float("nan")
    return {
        "requests": tally["requests"],
        "failures": tally["failures"],
        "wrong": tally["wrong"],
        "rps": tally["requests"] / seconds,
        "images_per_s": tally["checked_rows"] / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "rows": rows,
    }


def in_process(model, x: np.ndarray, calls: int) -> dict:
    """The model's own speed: predict called in this process, one call at a time."""
    out = {}
    for size in (1, 256):
        batch = x[:size]
        for _ in range(5):
            model.predict(batch)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            model.predict(batch)
            times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1000
        out[str(size)] = {
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "images_per_s": size * calls / sum(times),
        }
    return out


def handle_floor(npz: Path, env: dict, seconds: float = 10) -> dict:
    """Ray Serve's request path without HTTP, measured by a driver of its own joined to the running
    Ray (``handle_calls.py``, run as a script)."""
    cmd = [sys.executable, str(HERE / "handle_calls.py"), str(npz), str(seconds)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"serve: the handle measurement failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def soak(servers: list[Server], seconds: float, rps: float, work: Path, env: dict) -> dict:
    """Both servers at once at a steady rate; each one's memory every 5 s."""
    users = 8
    memory: dict[str, list[tuple[float, float]]] = {s.name: [] for s in servers}
    stop = threading.Event()

    def sample() -> None:
        start = time.monotonic()
        while not stop.is_set():
            for s in servers:
                memory[s.name].append((time.monotonic() - start, s.rss_mib()))
            stop.wait(5.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results: dict[str, dict] = {}

    def load(s: Server) -> None:
        results[s.name] = locust("soak", s, users, seconds, int(rps * seconds * 2), work, env, user_rps=rps / users)

    threads = [threading.Thread(target=load, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    sampler.join()
    out = {}
    for s in servers:
        samples = memory[s.name]
        # growth: the last minute's mean against the mean of the minute after a one-minute warm-up
        early = [m for t, m in samples if 60 <= t < 120] or [samples[0][1]]
        late = [m for t, m in samples if t >= samples[-1][0] - 60]
        out[s.name] = {
            **summary(results[s.name], 1),
            "seconds": results[s.name]["seconds"],
            "memory_mib": samples,
            "memory_early_mib": float(np.mean(early)),
            "memory_late_mib": float(np.mean(late)),
            "memory_growth": float(np.mean(late) / np.mean(early) - 1),
        }
    return out


# The batching settings tried before the cases: (max_batch_size, batch_wait_timeout_s).
BATCH_GRID = ((1, 0.0), (8, 0.002), (32, 0.002), (32, 0.01))


def batch_grid(ref: str, work: Path, env: dict, log: Path, seconds: float) -> list[dict]:
    """Ray Serve alone under each batching setting of BATCH_GRID: single images at 32 users and
    npy batches at 8, ``seconds`` each; what serve.yaml's choice was measured against."""
    mnist_codec = str(Path(sys.executable).parent / "mnist-codec")
    base = (ROOT / "serve.yaml").read_text()
    rows = []
    for size, wait in BATCH_GRID:
        cfg = work / f"serve-{size}-{wait}.yaml"
        cfg.write_text(base + f"max_batch_size: {size}\nbatch_wait_timeout_s: {wait}\n")
        port = free_port()
        cmd = [mnist_codec, "serve", "--ray", "--model", ref, "--port", str(port), "--config", str(cfg)]
        server = Server("ray", cmd, port, env, log)
        try:
            server.wait_ready()
            locust("single", server, 8, 3, 10**6, work, env)  # warm
            print(f"serve: batching {size} requests, {wait * 1000:g} ms wait", flush=True)
            single = summary(locust("single", server, 32, seconds, 200_000, work, env), 1)
            batch = summary(locust("batch-npy", server, BATCH_USERS, seconds, 200_000, work, env), 256)
        finally:
            server.stop()
        rows.append({"max_batch_size": size, "batch_wait_timeout_s": wait, "single": single, "npy": batch})
    return rows


def bench(args, work: Path, env: dict, log: Path) -> dict:
    """Every case against both servers; see the module docstring."""
    import mlflow

    from mnist_codec.data import splits
    from mnist_codec.serving import config

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}"
    env = {**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    mlflow.set_tracking_uri(uri)
    champion = mlflow.MlflowClient(uri).get_model_version_by_alias("mnist-codec", "champion")
    ref = str(champion.version)
    model = mlflow.pyfunc.load_model(f"models:/mnist-codec/{ref}")
    x = splits.load_split(ROOT / "data/processed", "eval")[0][:POOL]
    np.savez(work / "expected.npz", x=x, y=model.predict(x))
    own = in_process(model, x, args.calls)

    settings = config.load(ROOT / "serve.yaml")
    grid = batch_grid(ref, work, env, log, args.case_s / 2)
    mnist_codec = str(Path(sys.executable).parent / "mnist-codec")
    ray_port, mlflow_port = free_port(), free_port()
    servers = [
        Server("ray", [mnist_codec, "serve", "--ray", "--model", ref, "--port", str(ray_port)], ray_port, env, log),
        Server("mlflow", [mnist_codec, "serve", "--model", ref, "--port", str(mlflow_port)], mlflow_port, env, log),
    ]
    cases: dict[str, dict] = {}
    try:
        for s in servers:
            s.wait_ready()
        replicas = sum("ServeReplica" in " ".join(p.cmdline()) for p in servers[0].processes() if p.is_running())
        for s in servers:  # warm both
            locust("single", s, 8, 5, 10**6, work, env)
        plan = [("single", u) for u in SINGLE_USERS] + [("batch-json", BATCH_USERS), ("batch-npy", BATCH_USERS)]
        for case, users in plan:
            for s in servers:
                key = f"{case}@{users}"
                if case == "batch-npy" and s.name == "mlflow":  # MLflow's server takes no npy: its answer
                    status, body, _ = post(f"{s.url}/invocations", npy_bytes(x[:256]), "application/x-npy")
                    cases.setdefault(key, {})[s.name] = {
                        "refused": f"HTTP {status}: {body[:120].decode(errors='replace')}"
                    }
                    continue
                print(f"serve: {case}, {users} user(s), {s.name}", flush=True)
                tally = locust(case, s, users, args.case_s, 200_000, work, env)
                cases.setdefault(key, {})[s.name] = summary(tally, 1 if case == "single" else 256)
        floor = handle_floor(work / "expected.npz", env)
        print(f"serve: soak, {args.soak_s:.0f} s at {args.soak_rps:g} requests/s on each server", flush=True)
        soaked = soak(servers, args.soak_s, args.soak_rps, work, env)
    finally:
        for s in servers:
            s.stop()
    return {
        "model": f"models:/mnist-codec/{ref}",
        "codec": champion.tags.get("mnist_codec.codec", "?"),
        "settings": settings.model_dump(),
        "batch_grid": grid,
        "replicas": replicas,
        "in_process": own,
        "handle": floor,
        "cases": cases,
        "case_s": args.case_s,
        "soak": soaked,
        "soak_s": args.soak_s,
        "soak_rps": args.soak_rps,
    }


def serve_markdown(result: dict) -> str:
    from .serve_report import markdown

    if "cases" not in result:  # measured before the load test: one client, MLflow's server only
        return ""
    return markdown(result, section_head("The champion served under load: Ray Serve and MLflow", result))
