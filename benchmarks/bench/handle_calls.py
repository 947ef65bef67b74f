"""Ray Serve's request path without HTTP: single images through a DeploymentHandle to the
codec's batched method, 32 callers at once, for a number of seconds. Run by the serving benchmark
(bench/serve.py) as a script, joined to the Ray its server started; prints one JSON line.

Usage: python benchmarks/bench/handle_calls.py EXPECTED.npz SECONDS
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


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


if __name__ == "__main__":
    print(json.dumps(handle_calls(sys.argv[1], float(sys.argv[2]))))
