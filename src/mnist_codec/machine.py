"""The machine a figure was measured on, named as the docs name it: the CPU's model, its
family and model numbers (two CPUs sold under one name can differ there), the cores this
process may use."""

from __future__ import annotations


def cpu_numbers() -> tuple[str, str]:
    """(family, model) from /proc/cpuinfo; ('?', '?') where it does not say."""
    family = model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "cpu family" and family == "?":
                    family = value.strip()
                elif key.strip() == "model" and model == "?":
                    model = value.strip()
    except OSError:  # not Linux
        pass
    return family, model


def describe() -> str:
    """``AMD EPYC (family 23, model 1), 2 cores``."""
    from .codecs.device import cpu_model, usable_cores

    family, model = cpu_numbers()
    return f"{cpu_model()} (family {family}, model {model}), {usable_cores()} cores"
