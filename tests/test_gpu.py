"""The CUDA path: graphed steps equal eager steps, and CUDA training tracks the CPU's.

Marked ``gpu``; skipped cleanly where torch sees no CUDA device.
"""

import pytest
import torch

from mnist_codec.codecs import models, train
from mnist_codec.codecs.seeding import derive_seed, seed_everything

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SPECS = {
    name: {"kind": "deep", "latent_dim": 8, "hidden": [64, 16], "activation": name.removeprefix("deep_")}
    for name in ["deep_relu", "deep_tanh", "deep_leaky_relu"]
}


def _train(x, device, names, cuda_graphs=None, epochs=3):
    jobs = []
    for name in names:
        generator = seed_everything(derive_seed(11, name))
        jobs.append(train.Job(name, models.build(SPECS[name]).to(device), generator))
    xt = torch.from_numpy(x).to(device)
    return train.fit_many(jobs, xt, xt, epochs=epochs, batch_size=96, lr=1e-3, cuda_graphs=cuda_graphs), jobs


def _losses(histories):
    return [[r.train_loss for r in h] for h in histories]


def test_graphed_steps_give_the_losses_of_eager_steps(digits):
    x, _ = digits  # 400 images at batch 96: the partial batch of 16 runs outside the graph
    graphed, g_jobs = _train(x, "cuda", list(SPECS), cuda_graphs=True)
    eager, e_jobs = _train(x, "cuda", list(SPECS), cuda_graphs=False)
    for g, e in zip(_losses(graphed), _losses(eager), strict=True):
        assert g == pytest.approx(e, rel=1e-5)
    for a, b in zip(g_jobs, e_jobs, strict=True):
        for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_models_stepped_together_match_each_stepped_alone(digits):
    x, _ = digits
    together, _ = _train(x, "cuda", list(SPECS))
    for name, history in zip(SPECS, together, strict=True):
        alone, _ = _train(x, "cuda", [name])
        assert _losses(alone)[0] == pytest.approx(_losses([history])[0], rel=1e-5)


def test_cuda_training_tracks_cpu_training(digits):
    x, _ = digits
    on_gpu, _ = _train(x, "cuda", ["deep_leaky_relu"])
    on_cpu, _ = _train(x, "cpu", ["deep_leaky_relu"])
    assert _losses(on_gpu)[0] == pytest.approx(_losses(on_cpu)[0], rel=1e-3)


def test_bf16_on_cuda_graphed_equals_eager_and_tracks_fp32(digits):
    """bf16 autocast inside the captured graph gives the eager bf16 losses; both track fp32's."""
    x, _ = digits
    xt = torch.from_numpy(x).to("cuda")

    def run(precision, cuda_graphs):
        generator = seed_everything(derive_seed(11, "deep_relu"))
        job = train.Job("deep_relu", models.build(SPECS["deep_relu"]).to("cuda"), generator)
        return _losses(
            train.fit_many(
                [job], xt, xt, epochs=3, batch_size=96, lr=1e-3, precision=precision, cuda_graphs=cuda_graphs
            )
        )[0]

    graphed, eager, fp32 = run("bf16", True), run("bf16", False), run("fp32", True)
    assert graphed == pytest.approx(eager, rel=1e-5)
    assert graphed == pytest.approx(fp32, rel=0.01)


def test_this_card_is_judged_bf16_capable_by_its_compute_capability():
    from mnist_codec.codecs import device as devices

    native, what = devices.bf16_support(torch.device("cuda"))
    assert native == (torch.cuda.get_device_capability(0) >= (8, 0)) and "compute capability" in what
