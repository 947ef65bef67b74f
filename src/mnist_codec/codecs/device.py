"""The one place that chooses the compute device and CPU threads (what the CPU is and how many
cores this process may use: :mod:`mnist_codec.machine`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import TrainingError
from ..machine import cpu_flags as _cpu_flags  # a name of its own here: tests set the flags
from ..machine import cpu_model, usable_cores

if TYPE_CHECKING:
    import torch


def configure_cpu(threads: int) -> None:
    """Torch threads for this process, and flush-to-zero for the calling thread.

    Adam's second moments decay into denormal floats, which x86 CPUs handle many times
    slower than normal ones; flushing them to zero (TensorFlow's default on CPUs) keeps
    every step at full speed and changes no loss at the printed precision. The flag lives
    in each thread's FPU state, so worker threads call this too.
    """
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def resolve_device(name: str) -> torch.device:
    """Map the ``device`` param (auto | cpu | cuda) to a torch.device.

    ``auto`` takes CUDA when present, else the CPU; asking for ``cuda`` without one is an error.
    """
    import torch

    configure_cpu(usable_cores())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("params: 'device' = 'cuda' but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """(whether ``device`` computes bfloat16 products natively, what it has or lacks).

    A CPU needs AVX512-BF16 or AMX-BF16 (x86) or the BF16 extension (ARM): without them
    oneDNN emulates bf16 products in fp32 and converts on every step, slower than fp32
    itself. A CUDA card needs compute capability 8.0 (Ampere) or later.
    """
    import torch

    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) >= (8, 0):
            return True, f"compute capability {major}.{minor}"
        return False, f"compute capability {major}.{minor}, below the 8.0 that bf16 tensor cores need"
    flags = _cpu_flags()
    have = [
        name
        for name, ok in (
            ("AMX-BF16", torch.cpu._is_amx_tile_supported() or "amx_bf16" in flags),
            ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported() or "avx512_bf16" in flags),
            ("ARM BF16", "bf16" in flags),
        )
        if ok
    ]
    if have:
        return True, " and ".join(have)
    best = torch.backends.cpu.get_cpu_capability()
    return False, f"no AVX512-BF16, AMX-BF16 or ARM BF16 (its widest vector unit: {best})"


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse ``bf16`` on hardware without native bfloat16, in one line naming the device and what it lacks."""
    if precision == "fp32":
        return
    native, what = bf16_support(device)
    if not native:
        raise TrainingError(
            f"params: 'train.precision' = '{precision}' but {device_label(device)} has {what}; "
            "bf16 there would be emulated, slower than fp32: use train.precision=fp32"
        )


def device_label(device: torch.device) -> str:
    """``cpu:AMD EPYC 7B13, 2 cores`` or ``cuda:NVIDIA H200`` for ``device``."""
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{cpu_model()}, {usable_cores()} cores"


def cpu_plan(n_models: int, cores: int | None = None) -> tuple[int, int]:
    """(worker threads, torch threads per worker) to train ``n_models`` on the CPU.

    One model per core beats two cores per model: a batch of 128 is too small for the
    matrix products to split well across cores.
    """
    cores = cores or usable_cores()
    workers = max(1, min(n_models, cores))
    return workers, max(1, cores // workers)


def stack_sizes(n_models: int, parts: int) -> list[int]:
    """Members per stack when ``n_models`` of one layout are cut for ``parts`` workers: small
    enough that the workers share the stacks evenly, epoch by epoch (9 on 2: 4, 4, 1)."""
    size = max(1, n_models // max(1, parts))
    return [min(size, n_models - i) for i in range(0, n_models, size)]


def machine_name() -> str:
    """The machine that trains by default: the CUDA card if there is one, else the CPU's model
    and the cores this process may use (``cuda:NVIDIA H100 80GB HBM3``, ``cpu:AMD EPYC 7B13, 2 cores``)."""
    import torch

    return device_label(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def describe(device: torch.device, n_models: int = 1, precision: str = "fp32") -> str:
    """Human-readable device name, number format and training plan, recorded with every training run."""
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}, {precision}, {n_models} model(s) in one stack"
    cores = usable_cores()
    sizes = stack_sizes(n_models, cores)
    workers, threads = cpu_plan(len(sizes))
    return (
        f"cpu:{cores} cores, {precision}, {n_models} model(s) in {len(sizes)} stack(s) of up to {max(sizes)}, "
        f"{workers} stack(s) at a time, {threads} thread(s) each"
    )
