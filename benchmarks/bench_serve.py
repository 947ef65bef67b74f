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
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCUSTFILE = HERE / "locustfile.py"
POOL = 1024  # test images the requests are drawn from
SINGLE_USERS = (1, 8, 32)
BATCH_USERS = 8
# The targets, on 2 cores.
NPY_IMAGES_PER_S = 20_000
SINGLE_RPS, SINGLE_P99_MS = 1000, 50.0
SOAK_MEMORY_GROWTH = 0.10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: bytes, content_type: str, timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Server:
    """A server process started in its own session, stopped by its PID (SIGINT, as Ctrl-C)."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict, log: Path):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "a") as fh:
            self.proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.log = log

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve: {self.name} did not start; see {self.log}")
            time.sleep(0.5)

    def processes(self) -> list:
        """The server's process and its descendants (Ray's nodes, actors and replicas)."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_mib(self) -> float:
        import psutil

        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


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
    Ray (this file run as a script: :func:`handle_calls`)."""
    cmd = [sys.executable, __file__, "handle-calls", str(npz), str(seconds)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"serve: the handle measurement failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def handle_calls(npz: str, seconds: float, callers: int = 32) -> dict:
    """Single images through a DeploymentHandle to the codec's batched method, ``callers`` at once."""
    import asyncio

    from mnist_codec.serving.config import ray_environment

    ray_environment(local=True)  # before Ray is imported: the server's Ray is on 127.0.0.1
    import ray
    from ray import serve

    ray.init(address="auto", namespace="serve", logging_level="ERROR", log_to_driver=False)
    handle = serve.get_app_handle("mnist-codec")
    x = np.load(npz)["x"][:1]
    latencies: list[float] = []

    async def caller(until: float) -> None:
        while time.perf_counter() < until:
            start = time.perf_counter()
            await handle.infer.remote(("reconstruct", x))
            latencies.append(time.perf_counter() - start)

    async def main() -> float:
        await handle.infer.remote(("reconstruct", x))
        start = time.perf_counter()
        await asyncio.gather(*[caller(start + seconds) for _ in range(callers)])
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    ms = np.asarray(latencies) * 1000
    return {"rps": len(ms) / elapsed, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


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
                    status, body = post(f"{s.url}/invocations", npy_body(x[:256]), "application/x-npy")
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


def npy_body(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _fmt(v: float, unit: str = "") -> str:
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.1f}{unit}"


NAMES = {"ray": "Ray Serve", "mlflow": "MLflow"}
CASE_LABELS = {"single": "1 image, JSON", "batch-json": "256 images, JSON", "batch-npy": "256 images, npy"}


def markdown(result: dict, head: list[str]) -> str:
    """The section of benchmarks/RESULTS.md: the cases, both servers side by side, and the targets."""
    st = result["settings"]
    lines = [
        *head,
        (
            f"- **Model:** `{result['model']}` ({result['codec']}). **Ray Serve:** {result['replicas']} replicas, "
            f"`@serve.batch` up to {st['max_batch_size']} requests, {st['batch_wait_timeout_s'] * 1000:g} ms wait "
            f"(serve.yaml). **MLflow:** `mlflow models serve --env-manager local`, 1 worker (`make serve-model`)."
        ),
        (
            f"- **Load:** Locust on the same machine, headless, {result['case_s']:.0f} s a case (and at most 200,000 "
            "requests); every answer checked against the in-process model's during the load."
        ),
        "",
        "| Case | Server | requests/s | images/s | p50 | p99 | errors | wrong |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, by in result["cases"].items():
        case, users = key.split("@")
        label = f"{CASE_LABELS[case]}, {users} user{'s' if users != '1' else ''}"
        for name in ("ray", "mlflow"):
            r = by[name]
            if "refused" in r:
                lines.append(f"| {label} | {NAMES[name]} | not taken: {r['refused'][:48]}… | | | | | |")
                continue
            lines.append(
                f"| {label} | {NAMES[name]} | {_fmt(r['rps'])} | {_fmt(r['images_per_s'])} | {r['p50_ms']:.1f} ms "
                f"| {r['p99_ms']:.1f} ms | {r['failures'] - r['wrong']} | {r['wrong']} |"
            )
    own, h = result["in_process"], result["handle"]
    lines += [
        "",
        (
            f"The model in-process, one call at a time: 1 image {own['1']['p50_ms']:.2f} ms p50 "
            f"({_fmt(own['1']['images_per_s'])} images/s); 256 images {own['256']['p50_ms']:.2f} ms p50 "
            f"({_fmt(own['256']['images_per_s'])} images/s). Ray Serve's request path without HTTP (a "
            f"DeploymentHandle, 32 concurrent callers, 1 image each): {_fmt(h['rps'])} requests/s, "
            f"p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms."
        ),
        "",
        (
            f"Soak: both servers at once, {result['soak_rps']:g} single-image requests/s each for "
            f"{result['soak_s']:.0f} s (8 users); memory is the resident size of each server's processes, "
            "the last minute's mean against the mean of the minute after a minute's warm-up."
        ),
        "",
        "| Server | requests | errors | wrong | p50 | p99 | memory, early | memory, last | growth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("ray", "mlflow"):
        r = result["soak"][name]
        lines.append(
            f"| {NAMES[name]} | {r['requests']:,} | {r['failures'] - r['wrong']} | {r['wrong']} | "
            f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['memory_early_mib']:,.0f} MiB | "
            f"{r['memory_late_mib']:,.0f} MiB | {r['memory_growth'] * 100:+.1f}% |"
        )
    lines += ["", *grid_lines(result), *targets(result), ""]
    return "\n".join(lines)


def grid_lines(result: dict) -> list[str]:
    """How serve.yaml's batching was chosen: Ray Serve alone under each setting tried."""
    if not result.get("batch_grid"):
        return []
    lines = [
        (
            f"Batching settings tried (Ray Serve alone, {result['case_s'] / 2:.0f} s a case; the row in bold "
            "is serve.yaml's):"
        ),
        "",
        "| max_batch_size | wait | 1 image, 32 users: requests/s | p99 | 256 images npy, 8 users: images/s | p99 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    st = result["settings"]
    for row in result["batch_grid"]:
        chosen = (row["max_batch_size"], row["batch_wait_timeout_s"]) == (
            st["max_batch_size"],
            st["batch_wait_timeout_s"],
        )
        b = "**" if chosen else ""
        lines.append(
            f"| {b}{row['max_batch_size']}{b} | {b}{row['batch_wait_timeout_s'] * 1000:g} ms{b} | "
            f"{_fmt(row['single']['rps'])} | {row['single']['p99_ms']:.1f} ms | {_fmt(row['npy']['images_per_s'])} | "
            f"{row['npy']['p99_ms']:.1f} ms |"
        )
    return [*lines, ""]


def targets(result: dict) -> list[str]:
    """The targets for Ray Serve, each met or not, with MLflow's figure beside it."""
    npy = result["cases"][f"batch-npy@{BATCH_USERS}"]["ray"]
    json_mlflow = result["cases"][f"batch-json@{BATCH_USERS}"]["mlflow"]
    one, one_mlflow = result["cases"]["single@32"]["ray"], result["cases"]["single@32"]["mlflow"]
    soak_r, soak_m = result["soak"]["ray"], result["soak"]["mlflow"]
    long_enough = result["soak_s"] >= 600  # Locust's clock ends at the last answer, a moment before

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        "Targets (Ray Serve; MLflow's server beside it):",
        "",
        (
            f"- npy batches ≥ {NPY_IMAGES_PER_S:,} images/s: {_fmt(npy['images_per_s'])} "
            f"({met(npy['images_per_s'] >= NPY_IMAGES_PER_S)}); MLflow, 256 images as JSON: "
            f"{_fmt(json_mlflow['images_per_s'])}."
        ),
        (
            f"- single images at 32 users ≥ {SINGLE_RPS:,} requests/s with p99 ≤ {SINGLE_P99_MS:.0f} ms: "
            f"{_fmt(one['rps'])} requests/s, p99 {one['p99_ms']:.1f} ms "
            f"({met(one['rps'] >= SINGLE_RPS and one['p99_ms'] <= SINGLE_P99_MS)}); MLflow: "
            f"{_fmt(one_mlflow['rps'])} requests/s, p99 {one_mlflow['p99_ms']:.1f} ms."
        ),
        (
            f"- no errors in the soak: {soak_r['failures']} failed "
            f"({met(soak_r['failures'] == 0 and long_enough)}{'' if long_enough else ': shorter than 10 minutes'}); "
            f"MLflow: {soak_m['failures']}."
        ),
        (
            f"- memory growth in the soak ≤ {SOAK_MEMORY_GROWTH * 100:.0f}%: {soak_r['memory_growth'] * 100:+.1f}% "
            f"({met(soak_r['memory_growth'] <= SOAK_MEMORY_GROWTH)}); MLflow: {soak_m['memory_growth'] * 100:+.1f}%."
        ),
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["handle-calls"]:
    print(json.dumps(handle_calls(sys.argv[2], float(sys.argv[3]))))
