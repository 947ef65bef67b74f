"""``mnist-codec serve --ray`` (``make serve-ray``): a registered codec on Ray Serve, on
``http://127.0.0.1:5002/invocations``, with dynamic batching and binary bodies.

- Each replica loads the version through MLflow (``models:/mnist-codec/<version>``: the alias is
  resolved once, so every replica, and every one Ray restarts, serves the same version).
- A request is JSON (MLflow's format, answered as ``mlflow models serve`` answers it) or
  ``application/x-npy`` (:mod:`.wire`). Requests that arrive together are run through the codec
  as one batch (``@serve.batch``), grouped by mode.
- Bad input gets MLflow's 4xx answers; a body over the size limit 413 (read no further), a body
  that does not arrive within ``body_timeout_s`` 408. A slow client holds one of a replica's
  ``max_ongoing_requests`` slots and no other request's.
- Locally, Ray runs on this machine with every node on 127.0.0.1; with ``--cluster ADDRESS`` (or
  ``RAY_ADDRESS``) the application is deployed on that cluster. Ctrl-C (or SIGTERM) deletes the
  application and stops Ray and every replica it started.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from ray import serve

from ..errors import MnistCodecError
from . import wire
from .config import ServeConfig
from .model import run as run_codec

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

APP = "mnist-codec"
DEPLOYMENT = "CodecServer"
ROUTES = {"/invocations", "/ping", "/health", "/version"}  # those of MLflow's scoring server


class ServeError(MnistCodecError):
    """The server could not start as asked: its port taken, its model not loading on Ray.

    (Here, not in ``errors``: every stage depends on that module, and no stage serves.)"""


def keep_to_loopback() -> None:
    """Bind this replica's inter-deployment gRPC server to 127.0.0.1.

    Ray Serve (2.60) starts it, once the replica's class is built, on every address of the
    machine (``"[::]:0"`` in ``ray/serve/_private/replica.py``), whether or not anything uses
    it; this application does not (the proxy calls its replicas as Ray actors). Called by
    :class:`CodecServer`'s constructor, which runs before that server starts."""
    from ray.serve._private import replica

    bind = replica.add_port_to_grpc_server

    def on_loopback(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return bind(server, address)

    replica.add_port_to_grpc_server = on_loopback


def split_rows(out: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """A batch's answer cut back into each request's rows."""
    return np.split(out, np.cumsum(sizes)[:-1])


class CodecServer:
    """One replica's logic: the codec in eval mode, answering ``/invocations`` (see the module
    docstring), one request at a time. :class:`BatchedCodecServer`, the deployment, batches
    :meth:`infer`; this class runs without Ray Serve (Serve's batching needs a replica)."""

    def __init__(self, model_uri: str, tracking_uri: str, settings: dict[str, Any]) -> None:
        import mlflow
        import torch

        keep_to_loopback()
        self.settings = ServeConfig(**settings)
        torch.set_num_threads(self.settings.torch_threads)
        mlflow.set_tracking_uri(tracking_uri)
        served = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        self.codec, self.latent_dim = served.codec, int(served.latent_dim)
        self.model_uri = model_uri

    async def __call__(self, request: Request) -> Response:
        from starlette.responses import Response

        path = request.url.path.rstrip("/") or "/"
        if path not in ROUTES:
            return Response(wire.Refused(404, f"no route {path}: POST /invocations").body(), 404, media_type=wire.JSON)
        if path != "/invocations":
            text = self.model_uri if path == "/version" else "\n"
            return Response(text, 200, media_type="text/plain")
        if request.method != "POST":
            return Response(wire.Refused(405, "POST a batch to /invocations").body(), 405, media_type=wire.JSON)
        try:
            fmt = wire.media_type(request.headers.get("content-type"))
            body = await self.read_body(request)
            parsed = wire.parse(body, fmt, request.query_params.get("mode"), self.latent_dim)
            out = await self.infer((parsed.mode, parsed.rows))
            data, media = wire.answer(out, fmt)
        except wire.Refused as refused:
            return Response(refused.body(), refused.status, media_type=wire.JSON)
        return Response(data, 200, media_type=media)

    async def read_body(self, request: Request) -> bytes:
        """The whole body, at most ``max_body_bytes`` of it, within ``body_timeout_s``."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise wire.too_large(int(declared), limit)  # refused before a byte of it is read
        chunks: list[bytes] = []

        async def read() -> None:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise wire.too_large(size, limit)
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), timeout=self.settings.body_timeout_s)
        except asyncio.TimeoutError:
            raise wire.Refused(
                408, f"the request body did not arrive within {self.settings.body_timeout_s:g} s", "REQUEST_TIMEOUT"
            ) from None
        return b"".join(chunks)

    async def infer(self, item: tuple[str, np.ndarray]) -> np.ndarray:
        """One request's (mode, rows) through the codec."""
        return self.run_batch([item])[0]

    def run_batch(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        """Requests that arrived together, run through the codec as one batch per mode."""
        answers: list[np.ndarray | None] = [None] * len(items)
        for mode in {m for m, _ in items}:
            which = [i for i, (m, _) in enumerate(items) if m == mode]
            out = run_codec(self.codec, np.concatenate([items[i][1] for i in which]), mode)  # (sum of rows, width)
            for i, part in zip(which, split_rows(out, [len(items[i][1]) for i in which]), strict=True):
                answers[i] = part
        return answers  # type: ignore[return-value]  # every slot is filled: each item has a mode


class BatchedCodecServer(CodecServer):
    """The deployment: requests that arrive together go through the codec as one batch."""

    def __init__(self, model_uri: str, tracking_uri: str, settings: dict[str, Any]) -> None:
        super().__init__(model_uri, tracking_uri, settings)
        batcher: Any = self.infer  # serve.batch's wrapper, typed by Ray as the plain method
        batcher.set_max_batch_size(self.settings.max_batch_size)
        batcher.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)

    # The settings' batch size and wait replace these defaults in __init__.
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def infer(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        return self.run_batch(items)


def application(model_uri: str, tracking_uri: str, settings: ServeConfig, replicas: int) -> Any:
    """The Ray Serve application: ``replicas`` copies of the codec's deployment."""
    deployment = serve.deployment(
        name=DEPLOYMENT,
        num_replicas=replicas,
        max_ongoing_requests=settings.max_ongoing_requests,
        ray_actor_options={
            "num_cpus": settings.cpus_per_replica,
            "runtime_env": {"env_vars": {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}},
        },
        logging_config={"enable_access_log": False},
        health_check_period_s=2,
        health_check_timeout_s=10,
        graceful_shutdown_timeout_s=5,
    )(BatchedCodecServer)
    return deployment.bind(model_uri, tracking_uri, settings.model_dump())


def resolve(ref: str) -> tuple[str, str]:
    """(``models:/`` URI of the version ``ref`` names, the store's URI); DataError if there is none."""
    from ..tracking.registry import REGISTERED_MODEL, load_served, model_uri, registry_client
    from ..tracking.store import repo_root, tracking_uri

    load_served(ref)  # loaded here first: a missing or broken model fails before Ray starts
    version = str(ref).strip()
    if not version.isdigit():  # an alias: pinned to the version it names now
        version = str(registry_client().get_model_version_by_alias(REGISTERED_MODEL, version).version)
    return model_uri(version), tracking_uri(repo_root())


def port_free(port: int) -> None:
    """ServeError naming the port when something on this machine listens on it already."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ServeError(
                f"port {port} on 127.0.0.1 is taken ({exc.strerror}): stop what listens there, or choose "
                "another (--port, or RAY_SERVE_PORT=... with make serve-ray)"
            ) from None


def start_ray(cluster: str | None) -> None:
    """Join ``cluster``, or start Ray on this machine with every node on 127.0.0.1 (the caller has
    set :func:`.config.ray_environment` before Ray was imported: Ray reads it at import)."""
    import ray

    from ..experiments.cluster import ClusterError

    if cluster:
        try:
            ray.init(address=cluster, logging_level=logging.WARNING, log_to_driver=False)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... by version
            raise ClusterError(f"cannot reach the Ray cluster at {cluster}: {exc}") from None
        return
    ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    address = ray.util.get_node_ip_address()
    if address != "127.0.0.1":
        ray.shutdown()
        raise ServeError(
            f"Ray started on {address}, not 127.0.0.1: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 must be set "
            "before Ray is imported (mnist-codec serve --ray sets it)"
        )


def run(ref: str, settings: ServeConfig, cluster: str | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM, then delete the application and stop what was started."""
    from .. import interrupts

    interrupts.install()  # SIGTERM unwinds as Ctrl-C does
    if not cluster:
        port_free(settings.port)
    uri, store = resolve(ref)
    start_ray(cluster)
    import ray

    # Serve's own start-up lines say less than the one line below (and one of them, that new HTTP
    # options "will not be applied", is about serve.run's second start, not the options set here).
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        replicas = settings.replica_count(ray.cluster_resources().get("CPU", 1.0))
        try:
            serve.start(
                proxy_location="HeadOnly",  # one proxy, on 127.0.0.1 of the head node (or of this machine)
                http_options={
                    "host": "127.0.0.1",
                    "port": settings.port,
                    "request_timeout_s": settings.request_timeout_s,
                    "keep_alive_timeout_s": settings.keep_alive_timeout_s,
                },
                logging_config={"enable_access_log": False},
            )
            serve.run(application(uri, store, settings, replicas), name=APP, route_prefix="/")
        except Exception as exc:  # Ray Serve raises RuntimeError, RayTaskError... by cause
            last = [line for line in str(exc).strip().splitlines() if line.strip()][-1:]
            raise ServeError(f"{uri} could not start on Ray Serve: {' '.join(last)}") from None
        where = f"the Ray cluster at {cluster}" if cluster else "Ray on this machine"
        print(
            f"mnist-codec serve --ray: {uri} on http://127.0.0.1:{settings.port}/invocations, "
            f"{replicas} replica(s) on {where} (JSON or application/x-npy; Ctrl-C stops it)",
            flush=True,
        )
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("mnist-codec serve --ray: stopping", file=sys.stderr, flush=True)
    finally:
        try:
            if cluster:  # the team's cluster runs on; Serve too while it has other applications
                serve.delete(APP)
                if not serve.status().applications:
                    serve.shutdown()
            else:
                serve.shutdown()
        finally:
            ray.shutdown()
