"""The one place that times a stage: its own work by label, and its whole process.

A stage wraps what is its own work (a fit, training, scoring, figures) in :func:`work`;
everything else its process spends (the interpreter, imports, params, MLflow's store,
logging models, writing files) is its fixed cost. When ``MNIST_CODEC_TIMINGS`` names a
file, :func:`write_record` appends one JSON line per stage to it:
``{"stage", "seconds" (since the process started), "work": {label: seconds}}``.
The benchmark reads those lines; nothing else does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "MNIST_CODEC_TIMINGS"
_IMPORTED = time.time()
_work: dict[str, float] = {}


@contextmanager
def work(label: str) -> Iterator[None]:
    """Count the block's wall time as the stage's own work under ``label`` (summed over calls)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _work[label] = _work.get(label, 0.0) + time.perf_counter() - start


def process_seconds() -> float:
    """Seconds since this process started (Linux: from /proc, in the kernel's boot clock;
    elsewhere: since this module was imported, which misses the interpreter's start and
    the imports before it)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time() - _IMPORTED


def record(stage: str) -> dict:
    """The stage's timing so far: seconds since its process started, and its work by label."""
    return {"stage": stage, "seconds": round(process_seconds(), 3), "work": {k: round(v, 3) for k, v in _work.items()}}


def write_record(stage: str) -> None:
    """Append :func:`record` to the file ``MNIST_CODEC_TIMINGS`` names, if it names one."""
    path = os.environ.get(ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record(stage)) + "\n")
