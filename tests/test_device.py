"""The device and the CPU's cores (mnist_codec.codecs.device, mnist_codec.machine): one model per
core, bf16 judged by the hardware, the description a training run records, and the cores the
affinity mask (or OMP_NUM_THREADS) allows."""

from __future__ import annotations

import pytest
import torch

from mnist_codec.errors import TrainingError


def test_cpu_plan_gives_each_model_a_core():
    from mnist_codec.codecs.device import cpu_plan

    assert cpu_plan(1, cores=2) == (1, 2)
    assert cpu_plan(3, cores=2) == (2, 1)
    assert cpu_plan(3, cores=16) == (3, 5)
    assert cpu_plan(3, cores=1) == (1, 1)


def test_bf16_is_judged_by_the_hardware(monkeypatch):
    """A card before sm_80 and a CPU without bf16 units are refused by name; fp32 is never refused;
    a CPU that reports AVX512-BF16 (here: pretended) is let through."""
    from mnist_codec.codecs import device as devices

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(
        TrainingError,
        match=r"^params: 'train.precision' = 'bf16' but cuda:Tesla T4 has compute "
        r"capability 7\.5, below the 8\.0 that bf16 tensor cores need; ",
    ):
        devices.check_precision(torch.device("cuda"), "bf16")
    devices.check_precision(torch.device("cuda"), "fp32")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    devices.check_precision(torch.device("cuda"), "bf16")

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(TrainingError, match=r"has no AVX512-BF16, AMX-BF16 or ARM BF16 \(its widest vector unit"):
        devices.check_precision(torch.device("cpu"), "bf16")
    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert devices.bf16_support(torch.device("cpu")) == (True, "AVX512-BF16")
    devices.check_precision(torch.device("cpu"), "bf16")


def test_the_device_description_names_the_precision():
    from mnist_codec.codecs import device as devices

    text = devices.describe(torch.device("cpu"), 9, "bf16")
    assert text.startswith(f"cpu:{devices.usable_cores()} cores, bf16, 9 model(s) in ")


def test_the_cores_used_are_the_affinity_mask_or_fewer_where_omp_num_threads_says(monkeypatch):
    """A Ray task that declared 2 CPUs gets OMP_NUM_THREADS=2 from Ray: training takes 2 threads."""
    import os

    from mnist_codec.codecs import device as devices

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert devices.usable_cores() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert devices.usable_cores() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # never more than the process may run on
    assert devices.usable_cores() == 4
    for junk in ("0", "", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert devices.usable_cores() == 4
