"""The Ray Serve replica's logic in this process, without Ray: the smoke run's champion loaded
through MLflow, requests as Starlette builds them (routes, formats, the body's size limit and
timeout), requests of several modes run as one batch, and the deployment as Ray Serve gets it.
`tests/test_serve_ray.py` runs the same code on a real Ray."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import numpy as np
import pytest
from starlette.requests import Request

from mnist_codec.loopback import RAY_LOOPBACK
from mnist_codec.serving import config, ray_serve
from mnist_codec.serving.wire import npy_bytes

LIMIT = 200_000  # bytes: this test's body limit


@pytest.fixture
def served(smoke, monkeypatch):
    """(replica logic on the smoke run's champion, the same model as MLflow loads it)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils
    from ray.serve._private import replica

    import smoke as run

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)  # restored after
    monkeypatch.setattr(replica, "add_port_to_grpc_server", replica.add_port_to_grpc_server)
    uri = run.env_for(smoke)["MLFLOW_TRACKING_URI"]
    version = mlflow.MlflowClient(uri).get_model_version_by_alias("mnist-codec", "champion").version
    settings = config.ServeConfig(body_timeout_s=0.5, max_body_bytes=LIMIT)
    server = ray_serve.CodecServer(f"models:/mnist-codec/{version}", uri, settings.model_dump())
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/mnist-codec/{version}")
    return server, model


def request(
    body: bytes,
    content_type: str = "application/x-npy",
    query: str = "",
    path: str = "/invocations",
    method: str = "POST",
    declare: bool = True,
    chunks: int = 1,
    delay: float = 0.0,
) -> Request:
    """A Starlette request as Ray Serve's proxy hands it to a replica; its body in ``chunks``
    parts, ``delay`` seconds apart (a slow client)."""
    size = max(1, -(-len(body) // chunks))
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": k < len(parts) - 1} for k, p in enumerate(parts)]

    async def receive() -> dict:
        if delay:
            await asyncio.sleep(delay)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    headers = [(b"content-type", content_type.encode())]
    if declare:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(), "headers": headers}
    return Request(scope, receive)


def call(server, req: Request):
    return asyncio.run(server(req))


def test_npy_and_json_requests_are_answered_as_the_model_answers(served, digits):
    server, model = served
    x = digits[0][:4]
    resp = call(server, request(npy_bytes(x)))
    assert resp.status_code == 200 and resp.media_type == "application/x-npy"
    assert np.allclose(np.load(io.BytesIO(resp.body)), model.predict(x), rtol=0, atol=1e-5)
    codes = model.predict(x, params={"mode": "encode"})
    resp = call(server, request(npy_bytes(codes), query="mode=decode"))
    assert np.allclose(np.load(io.BytesIO(resp.body)), model.predict(codes, params={"mode": "decode"}), atol=1e-5)
    doc = json.dumps({"inputs": x.tolist(), "params": {"mode": "encode"}}).encode()
    resp = call(server, request(doc, "application/json"))
    got = np.asarray(json.loads(resp.body)["predictions"], np.float32)
    assert resp.status_code == 200 and np.allclose(got, codes, rtol=0, atol=1e-5)


def test_routes_other_than_invocations(served):
    server, _ = served
    assert call(server, request(b"", path="/ping", method="GET")).status_code == 200
    assert call(server, request(b"", path="/version", method="GET")).body.decode().startswith("models:/mnist-codec/")
    resp = call(server, request(b"", path="/predict"))
    assert resp.status_code == 404 and b"no route /predict" in resp.body
    assert call(server, request(b"", method="GET")).status_code == 405


def test_refusals_carry_their_status_and_mlflows_error_body(served, digits):
    server, _ = served
    x = digits[0][:2]
    cases = [
        (request(npy_bytes(x), "text/csv"), 415, "is not supported"),
        (request(npy_bytes(x[:, :700])), 400, "expected 784 pixels per row, got 700"),
        (request(b"\x93NUMPY broken"), 400, "not a readable .npy array"),
        (request(npy_bytes(x), query="mode=zip"), 400, "mode 'zip' is not one of"),
        # declared over the limit: refused before the body is read
        (request(npy_bytes(np.zeros((100, 784), np.float32))), 413, "over the limit of 200,000"),
        # no length declared (chunked): refused once the limit is crossed
        (request(npy_bytes(np.zeros((100, 784), np.float32)), declare=False, chunks=8), 413, "over the limit"),
        # a body that keeps the server waiting: cut off at body_timeout_s
        (request(npy_bytes(x), chunks=6, delay=0.2), 408, "did not arrive within 0.5 s"),
    ]
    for req, status, message in cases:
        resp = call(server, req)
        doc = json.loads(resp.body)
        assert resp.status_code == status and message in doc["message"], (status, doc)
        assert resp.media_type == "application/json" and "error_code" in doc


def test_requests_of_several_modes_run_as_one_batch_per_mode(served, digits):
    server, model = served
    x = digits[0][:6]
    codes = model.predict(x[:2], params={"mode": "encode"})
    items = [("reconstruct", x[:1]), ("encode", x[1:3]), ("decode", codes), ("reconstruct", x[3:6])]
    calls = {"encode": 0, "decode": 0}
    codec = server.codec
    for name in calls:
        inner = getattr(codec, name)

        def counted(t, _inner=inner, _name=name):
            calls[_name] += 1
            return _inner(t)

        setattr(codec, name, counted)
    answers = server.run_batch(items)
    # reconstruct: one encode and one decode for its 4 rows; encode and decode once each
    assert calls == {"encode": 2, "decode": 2}
    assert [a.shape for a in answers] == [(1, 784), (2, codes.shape[1]), (2, 784), (3, 784)]
    assert np.allclose(answers[3], model.predict(x[3:6]), rtol=0, atol=1e-5)
    assert np.allclose(answers[1], model.predict(x[1:3], params={"mode": "encode"}), rtol=0, atol=1e-5)
    parts = ray_serve.split_rows(np.arange(12).reshape(6, 2), [1, 2, 3])
    assert [p.shape[0] for p in parts] == [1, 2, 3] and parts[2][0, 0] == 6


def test_the_deployment_takes_serve_yamls_settings(tmp_path):
    settings = config.ServeConfig(max_ongoing_requests=7, cpus_per_replica=0.5)
    app = ray_serve.application("models:/mnist-codec/1", "sqlite:///x.db", settings, 3)
    deployment = app._bound_deployment
    assert deployment.name == ray_serve.DEPLOYMENT and deployment.num_replicas == 3
    assert deployment.max_ongoing_requests == 7 and deployment.ray_actor_options["num_cpus"] == 0.5
    assert deployment.func_or_class is ray_serve.BatchedCodecServer


def test_a_taken_port_is_named_before_ray_starts():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ray_serve.ServeError, match=f"port {port} on 127.0.0.1 is taken"):
            ray_serve.port_free(port)
    ray_serve.port_free(port)  # free again


def test_the_replicas_grpc_server_is_bound_to_the_loopback(monkeypatch):
    from ray.serve._private import replica

    seen = []
    monkeypatch.setattr(replica, "add_port_to_grpc_server", lambda server, address: seen.append(address) or 1)
    ray_serve.keep_to_loopback()
    replica.add_port_to_grpc_server(None, "[::]:0")
    replica.add_port_to_grpc_server(None, "127.0.0.1:7000")
    assert seen == ["127.0.0.1:0", "127.0.0.1:7000"]


def test_serve_environment_keeps_a_local_ray_on_the_loopback(monkeypatch):
    import os

    for key in (*config.SERVE_ENV, *RAY_LOOPBACK):
        monkeypatch.delenv(key, raising=False)
    config.ray_environment(local=False)
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ  # a cluster's nodes keep their own
    assert all(os.environ[k] == v for k, v in config.SERVE_ENV.items())  # Serve's settings, niceness 0
    config.ray_environment(local=True)
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
