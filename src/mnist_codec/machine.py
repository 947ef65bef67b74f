"""The machine this process runs on, named as the docs name it: the CPU's model, its family and
model numbers (two CPUs sold under one name can differ there), its feature flags, and the cores
this process may use. The one reader of ``/proc/cpuinfo``; no torch here, so the gate and the
benchmarks name the machine without loading it."""

from __future__ import annotations

import os
from functools import lru_cache


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (``model name``, ``cpu family``,
    ``model``, ``flags`` on x86, ``Features`` on ARM); empty where there is no such file. Read
    once a process: the CPU does not change under it."""
    return dict(_read_cpuinfo())


@lru_cache(maxsize=1)
def _read_cpuinfo() -> tuple[tuple[str, str], ...]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    if fields:
                        break  # the first processor's block has ended
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux
        pass
    return tuple(fields.items())


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on ARM); empty where unknown."""
    info = cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    """``AMD EPYC 7B13``: the CPU's model name, else what the platform says."""
    import platform

    return cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_numbers() -> tuple[str, str]:
    """(family, model) of the CPU; ('?', '?') where it does not say."""
    info = cpuinfo()
    return info.get("cpu family") or "?", info.get("model") or "?"


def usable_cores() -> int:
    """CPU cores this process may use: those it may run on (affinity masks, cgroups' cpusets),
    or fewer where ``OMP_NUM_THREADS`` says so (as a scheduler such as Ray sets it to the CPUs
    a task declared)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) > 0:
        return min(cores, int(limit))
    return cores


def describe() -> str:
    """``AMD EPYC (family 23, model 1), 2 cores``."""
    family, model = cpu_numbers()
    return f"{cpu_model()} (family {family}, model {model}), {usable_cores()} cores"
