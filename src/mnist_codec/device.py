"""The one place that chooses the compute device and CPU threads."""

from __future__ import annotations

import os

from .errors import TrainingError


def usable_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and cgroups' cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(name: str):
    """Map the ``device`` param (auto | cpu | cuda) to a torch.device.

    ``auto`` takes CUDA when present, else the CPU; asking for ``cuda`` without one is an error.
    """
    import torch

    torch.set_num_threads(usable_cores())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("params: 'device' = 'cuda' but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def describe(device) -> str:
    """Human-readable device name, recorded with every training run."""
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{usable_cores()} threads"
