"""Locust users for ``benchmarks/bench/serve.py`` (``make bench ONLY=serve``): one case a run.

Run by the benchmark, headless, against 127.0.0.1 only; it sets these variables:

- ``SERVE_CASE``: ``single`` (one image a request, JSON), ``batch-json`` or ``batch-npy`` (256
  images a request), ``soak`` (single images, each user at ``SERVE_USER_RPS`` requests a second);
- ``SERVE_EXPECTED``: an ``.npz`` of ``x`` (a pool of test images) and ``y`` (the in-process
  model's reconstructions of them). Every answer is checked against ``y``: a wrong one is a
  failure, not only a non-200 status;
- ``SERVE_OUT``: where the latencies (ms) and the counts are written when the run ends;
- ``SERVE_MAX_REQUESTS``: the run stops after this many requests (and after ``--run-time``).
"""

from __future__ import annotations

import io
import json
import os
import random

import numpy as np
from locust import FastHttpUser, constant, constant_throughput, events, task

from mnist_codec.serving.wire import npy_bytes

CASE = os.environ.get("SERVE_CASE", "single")
BATCH = 256
TOLERANCE = 1e-5  # a batch's rows may take other float paths than the in-process call's
_expected = np.load(os.environ["SERVE_EXPECTED"]) if "SERVE_EXPECTED" in os.environ else None
X = _expected["x"] if _expected is not None else np.zeros((BATCH, 784), np.float32)
Y = _expected["y"] if _expected is not None else np.zeros((BATCH, 784), np.float32)
tally = {"requests": 0, "failures": 0, "wrong": 0, "checked_rows": 0, "latency_ms": []}


def _bodies() -> list[tuple[int, bytes]]:
    """(first row, body) of each request this case sends, built once."""
    if CASE in ("single", "soak"):
        return [(i, json.dumps({"inputs": X[i : i + 1].tolist()}).encode()) for i in range(len(X))]
    starts = range(0, len(X) - BATCH + 1, BATCH)
    if CASE == "batch-npy":
        return [(s, npy_bytes(X[s : s + BATCH])) for s in starts]
    return [(s, json.dumps({"inputs": X[s : s + BATCH].tolist()}).encode()) for s in starts]


BODIES = _bodies()


class Client(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("SERVE_USER_RPS", "1"))) if CASE == "soak" else constant(0)
    network_timeout = connection_timeout = 30.0

    @task
    def post(self) -> None:
        start, body = random.choice(BODIES)
        npy = CASE == "batch-npy"
        headers = {"Content-Type": "application/x-npy" if npy else "application/json"}
        with self.client.post("/invocations", data=body, headers=headers, catch_response=True, name=CASE) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            got = np.load(io.BytesIO(resp.content)) if npy else np.asarray(resp.json()["predictions"], np.float32)
            want = Y[start : start + len(got)]
            # the largest difference, in one pass: the check costs the client little of its core
            if (
                got.shape != want.shape
                or got.shape[0] != (1 if CASE in ("single", "soak") else BATCH)
                or not (float(np.max(np.abs(got - want))) <= TOLERANCE)
            ):
                tally["wrong"] += 1
                resp.failure(f"wrong answer for rows {start}..: shape {got.shape}")
                return
            tally["checked_rows"] += len(got)


@events.request.add_listener
def _count(response_time: float, exception: Exception | None, **_: object) -> None:
    tally["requests"] += 1
    tally["failures"] += exception is not None
    tally["latency_ms"].append(response_time)
    limit = int(os.environ.get("SERVE_MAX_REQUESTS", "0"))
    env = _count.environment  # type: ignore[attr-defined]
    if limit and tally["requests"] >= limit and env.runner is not None:
        env.runner.quit()


@events.init.add_listener
def _keep(environment, **_: object) -> None:
    _count.environment = environment  # type: ignore[attr-defined]


@events.quitting.add_listener
def _write(environment, **_: object) -> None:
    stats = environment.stats.total
    out = {
        **tally,
        "seconds": stats.last_request_timestamp - stats.start_time if stats.last_request_timestamp else 0.0,
    }
    if "SERVE_OUT" in os.environ:
        with open(os.environ["SERVE_OUT"], "w") as fh:
            json.dump(out, fh)
