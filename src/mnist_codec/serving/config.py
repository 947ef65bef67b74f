"""``serve.yaml``: how ``make serve-ray`` serves the champion on Ray Serve (docs/serving.md).

Checked before Ray starts: unknown keys and out-of-range values are refused in one line that
names the file, the line and the key (:mod:`mnist_codec.config`, as every YAML file is checked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from .. import config
from ..loopback import keep_ray_on_loopback
from .wire import MAX_BODY_BYTES

FILE = "serve.yaml"
# Ray Serve's settings for many small requests, those of its RAY_SERVE_THROUGHPUT_OPTIMIZED mode
# that keep to the loopback: the request's code in the replica's own event loop, the router in
# the proxy's, request logs buffered. (That mode's gRPC path from proxy to replica, and its
# direct ingress, would have every replica listen on every address of the machine.) Ray's
# workers run at niceness 0, as MLflow's server does, not Ray's default 15. The processes Ray
# starts on this machine inherit them; a cluster's nodes take theirs from where they started.
SERVE_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_worker_niceness": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def ray_environment(local: bool) -> None:
    """Set, before Ray is imported, the environment Ray and its processes read: Serve's settings,
    and for Ray started on this machine (``local``) every node on 127.0.0.1. On a cluster, the
    driver runs on one of its nodes, at that node's address."""
    import os

    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)
    if local:
        keep_ray_on_loopback()


class ServeConfig(BaseModel):
    """One Ray Serve application: the codec's deployment and the HTTP proxy in front of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(5002, ge=1, le=65535)
    # "cpus": one replica per CPU Ray has (after cpus_per_replica); a number sets the count.
    replicas: PositiveInt | Literal["cpus"] = "cpus"
    max_replicas: PositiveInt = 8  # the cap on "cpus"
    cpus_per_replica: PositiveFloat = 1.0
    torch_threads: PositiveInt = 1  # each replica's intra-op threads: replicas, not threads, use the cores
    max_batch_size: PositiveInt = 32  # requests the server runs through the codec as one batch
    batch_wait_timeout_s: float = Field(0.002, ge=0, le=1)
    max_ongoing_requests: PositiveInt = 128  # per replica; a slow client holds one of them
    request_timeout_s: PositiveFloat = 30.0  # end to end, at the proxy: 408 after it
    body_timeout_s: PositiveFloat = 10.0  # the whole body must arrive within it: 408 after it
    max_body_bytes: PositiveInt = MAX_BODY_BYTES  # 413 over it
    keep_alive_timeout_s: PositiveInt = 90

    def replica_count(self, cluster_cpus: float) -> int:
        """Replicas to start on a cluster with ``cluster_cpus`` CPUs."""
        if self.replicas != "cpus":
            return int(self.replicas)
        return max(1, min(self.max_replicas, int(cluster_cpus // self.cpus_per_replica)))


def load(path: str | Path = FILE, **overrides: object) -> ServeConfig:
    """The checked config in ``path`` (its keys, then ``overrides`` that are not None)."""
    doc = config.read_yaml(path, what="the Ray Serve settings of `make serve-ray`")
    return config.check(ServeConfig, doc.overridden({k: v for k, v in overrides.items() if v is not None}))
