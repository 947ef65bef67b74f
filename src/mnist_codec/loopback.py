"""Everything mnist-codec starts listens on and talks to 127.0.0.1. Ray on Linux swaps 127.0.0.1
for the machine's network address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is ``0``, and
reads it when it is imported: :data:`RAY_LOOPBACK` is that setting, written once, for the
search, Ray Serve, the tests and the benchmarks that start a Ray on this machine."""

from __future__ import annotations

import os

RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def keep_ray_on_loopback() -> None:
    """Set :data:`RAY_LOOPBACK` in this process's environment (before Ray is imported; the
    processes Ray starts inherit it)."""
    os.environ.update(RAY_LOOPBACK)
