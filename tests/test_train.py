"""The training loop (mnist_codec.codecs.train): a few epochs lower the loss, the same seed gives the
same numbers, the last partial batch counts, a non-finite loss stops training by name, the fast
trainer gives a plain eager loop's losses, bf16 tracks fp32, and Ctrl-C at any moment of threaded
training stops it (stacks: test_stacking.py; the graphed step: test_graphs.py; schedules:
test_schedules.py; the device and cores: test_device.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_codec.codecs import models, schedules, train
from mnist_codec.codecs.seeding import derive_seed, seed_everything
from mnist_codec.errors import TrainingError
from trainings import SPECS, deep_jobs

from services import ctrl_c_as_in_a_terminal


def _fit(x, name="m", epochs=2, seed=0, batch_size=32, lr=1e-3, spec=None):
    spec = spec or {"kind": "deep", "latent_dim": 8, "hidden": [64, 16], "activation": "leaky_relu"}
    generator = seed_everything(derive_seed(seed, name))
    model = models.build(spec)
    xt = torch.from_numpy(x)
    history = train.fit(
        model, xt, xt[:100], name=name, epochs=epochs, batch_size=batch_size, lr=lr, generator=generator
    )
    return model, history


def test_a_few_epochs_lower_the_loss(digits):
    x, _ = digits
    model, history = _fit(x, epochs=4, lr=3e-3)
    assert [r.epoch for r in history] == [1, 2, 3, 4]
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].eval_loss < history[0].eval_loss
    assert history[-1].eval_loss == pytest.approx(models.reconstruction_mse(model, torch.from_numpy(x[:100])))


def test_same_seed_same_numbers(digits):
    x, _ = digits
    m1, h1 = _fit(x, seed=7)
    m2, h2 = _fit(x, seed=7)
    assert [r.train_loss for r in h1] == [r.train_loss for r in h2]
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p, q)
    _, h3 = _fit(x, seed=8)
    assert h3[-1].train_loss != h1[-1].train_loss


def test_a_models_result_does_not_depend_on_models_trained_before_it(digits):
    x, _ = digits
    _, alone = _fit(x, name="deep_tanh")
    _fit(x, name="deep_relu")  # something else trained first, in the same process
    _, after = _fit(x, name="deep_tanh")
    assert [r.train_loss for r in alone] == [r.train_loss for r in after]
    assert derive_seed(42, "deep_tanh") != derive_seed(42, "deep_relu")


def test_last_partial_batch_is_trained_on(digits):
    # 400 images at batch 128: 3 full batches and one of 16. Every image counts in the epoch loss:
    # with lr=0 the epoch loss equals the untrained model's MSE over all 400 images.
    x, _ = digits
    generator = seed_everything(1)
    model = models.build({"kind": "ae", "latent_dim": 4})
    before = models.reconstruction_mse(model, torch.from_numpy(x))
    xt = torch.from_numpy(x)
    hist = train.fit(model, xt, xt, name="ae", epochs=1, batch_size=128, lr=1e-30, generator=generator)
    assert hist[0].train_loss == pytest.approx(before, rel=1e-5)


@pytest.mark.parametrize("alone", [True, False], ids=["one-model", "side-by-side"])
def test_a_non_finite_loss_stops_training_naming_model_and_epoch(digits, alone):
    """The library's side (the stage's one line and its FAILED runs: tests/faults/test_training_faults.py):
    a model alone, and one of two models trained side by side in a stack."""
    x, _ = digits
    xt = torch.from_numpy(x)
    if alone:
        model = models.build({"kind": "ae", "latent_dim": 4})
        with torch.no_grad():
            model.encoder[0].weight[0, 0] = float("nan")
        with pytest.raises(TrainingError, match="ae: training loss became nan in epoch 1"):
            train.fit(model, xt, xt, name="ae", epochs=3, batch_size=64, lr=1e-3, generator=seed_everything(0))
    else:
        jobs = deep_jobs(["deep_relu", "deep_tanh"])
        with torch.no_grad():
            jobs[1].model.encoder[0].weight[0, 0] = float("inf")
        with pytest.raises(TrainingError, match="deep_tanh: training loss became nan in epoch 1"):
            train.fit_many(jobs, xt, xt, epochs=5, batch_size=64, lr=1e-3, cores=2)


def test_reconstruction_mse_is_chunk_independent(digits):
    x, _ = digits
    model = models.build({"kind": "ae", "latent_dim": 4})
    xt = torch.from_numpy(x)
    assert models.reconstruction_mse(model, xt, chunk=7) == pytest.approx(
        models.reconstruction_mse(model, xt), rel=1e-9
    )
    ref = float(np.mean((model(xt).detach().numpy().astype(np.float64) - x) ** 2))
    assert models.reconstruction_mse(model, xt) == pytest.approx(ref, rel=1e-6)


def _plain_notebook_loop(model, x, epochs, batch_size, lr, generator, schedule="constant", weight_decay=0.0):
    """The notebook's loop, written plainly: per-step loss read-back, unfused Adam (AdamW with
    weight decay), the rate set by hand at each epoch's start."""
    optimizer = (
        torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        if weight_decay
        else torch.optim.Adam(model.parameters(), lr=lr)
    )
    losses = []
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = schedules.learning_rate(schedule, lr, epoch, epochs)
        perm = torch.randperm(len(x), generator=generator)
        running = 0.0
        for i in range(0, len(x), batch_size):
            xb = x[perm[i : i + batch_size]]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb), xb)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(xb)
        losses.append(running / len(x))
    return losses


@pytest.mark.parametrize(
    ("kind", "optim"),
    [
        ("ae", {}),
        ("deep", {}),
        ("deep", {"schedule": "cosine"}),
        ("deep", {"schedule": "onecycle", "weight_decay": 1e-2}),
        ("conv", {}),
        ("conv", {"schedule": "onecycle", "weight_decay": 1e-2}),
    ],
)
def test_fast_trainer_gives_the_losses_of_a_plain_eager_loop(digits, kind, optim):
    x, _ = digits
    xt = torch.from_numpy(x)
    spec = SPECS[kind]
    ref_model = models.build(spec)  # same initial weights for both
    fast_model = models.build(spec)
    fast_model.load_state_dict(ref_model.state_dict())
    # 400 images at batch 96: four full batches and a partial one of 16, every epoch
    ref = _plain_notebook_loop(ref_model, xt, 3, 96, 1e-3, torch.Generator().manual_seed(5), **optim)
    hist = train.fit(
        fast_model,
        xt,
        xt,
        name=kind,
        epochs=3,
        batch_size=96,
        lr=1e-3,
        generator=torch.Generator().manual_seed(5),
        cores=1,
        **optim,
    )
    assert [r.train_loss for r in hist] == pytest.approx(ref, rel=1e-5)
    for p, q in zip(fast_model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


DEEP = {"kind": "deep", "latent_dim": 32, "hidden": [256, 64], "activation": "relu"}


def _fit_precision(x, precision, epochs=3, seed=5):
    torch.manual_seed(seed)  # both precisions start from the same weights and data order
    model = models.build(DEEP)
    history = train.fit(
        model,
        x,
        x[:500],
        name="deep_relu",
        epochs=epochs,
        batch_size=128,
        lr=1e-3,
        generator=seed_everything(seed),
        precision=precision,
    )
    return model, history


def test_bf16_losses_track_fp32_and_the_weights_stay_fp32():
    """The deep AE on 2,000 real digits, 3 epochs (48 Adam steps) from the same weights and data
    order: bf16 autocast's losses within 1% of fp32's at every epoch, as bf16's 8-bit mantissa
    allows (a relative rounding of 2^-9 per product). On a CPU without native bf16 autocast is
    emulated (slow, the same numbers), so this holds wherever it runs."""
    from mnist_codec.data import idx, mnist

    images, _ = idx.load_pair(mnist.bundled_dir(), "train")
    x = torch.from_numpy(images[:2000].reshape(-1, 784).astype(np.float32) / 255.0)
    _m32, h32 = _fit_precision(x, "fp32")
    m16, h16 = _fit_precision(x, "bf16")
    assert h32[-1].train_loss < h32[0].train_loss * 0.9  # it learns: the comparison is not of two constants
    for a, b in zip(h32, h16, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=0.01)
        assert b.eval_loss == pytest.approx(a.eval_loss, rel=0.01)
    assert [r.train_loss for r in h16] != [r.train_loss for r in h32]  # bf16 did run: other roundings
    assert all(p.dtype == torch.float32 for p in m16.parameters())  # weights (and so Adam's state) fp32
    assert models.reconstruction_mse(m16, x[:500]) == pytest.approx(h16[-1].eval_loss, rel=1e-6)  # scored fp32


def test_an_unknown_precision_is_refused(digits):
    x, _ = digits
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, not 'fp16'"):
        train.fit(
            models.build({"kind": "ae", "latent_dim": 4}),
            torch.from_numpy(x),
            torch.from_numpy(x[:10]),
            name="ae",
            epochs=1,
            batch_size=32,
            lr=1e-3,
            generator=seed_everything(1),
            precision="fp16",
        )


CTRL_C_UNDER_LOAD = """
import os, random, signal, sys, threading, time
import torch
from mnist_codec import interrupts
from mnist_codec.codecs import models, train
from mnist_codec.codecs.seeding import derive_seed, seed_everything

import concurrent.futures._base as futures_base

interrupts.install()  # as a stage does: SIGINT raised as KeyboardInterrupt in the main thread

def slow_enter(self):
    # the window that once hung a stage, widened: wait() takes each future's lock in turn, and
    # a Ctrl-C raised between two of them left the first one held
    for future in self.futures:
        future._condition.acquire()
        time.sleep(0.002)


futures_base._AcquireFutures.__enter__ = slow_enter
x = torch.rand(256, 784)
rng = random.Random(0)
slowest = 0.0
for attempt in range(int(sys.argv[1])):
    jobs = []
    for k, name in enumerate(["deep_relu", "deep_tanh", "deep_leaky_relu", "deep_elu"] * 2):
        spec = {"kind": "deep", "latent_dim": 4, "hidden": [8], "activation": name.removeprefix("deep_")}
        jobs.append(train.Job(f"{name}{k}", models.build(spec), seed_everything(derive_seed(attempt, name))))
    sent = []
    delay = rng.uniform(0.005, 0.15)
    timer = threading.Timer(delay, lambda: (sent.append(time.monotonic()), os.kill(os.getpid(), signal.SIGINT)))
    timer.start()
    try:
        train.fit_many(jobs, x, x[:32], epochs=100000, batch_size=256, lr=1e-3, cores=2, stacks_per_group=4)
    except KeyboardInterrupt:
        slowest = max(slowest, time.monotonic() - sent[0])
    else:
        raise SystemExit("training ended without the Ctrl-C")
    timer.join()
print(f"every Ctrl-C stopped the training; the slowest in {slowest:.3f} s")
"""


@pytest.mark.full
def test_ctrl_c_at_any_moment_of_threaded_training_stops_it_and_never_hangs(tmp_path):
    """Ctrl-C at random moments of training on a thread pool, many times: each one stops the
    training promptly. Raised inside the futures' waiting, between two of their locks, it once
    left a lock held and the stage hung for ever (seen once in a loaded test run); the script
    widens that window so that the old code hangs here every time, and a hang fails by the timeout."""
    import subprocess
    import sys

    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_UNDER_LOAD)
    proc = subprocess.run(
        [sys.executable, str(script), "60"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=ctrl_c_as_in_a_terminal,  # as from a terminal, even under `bash .ci/run &`
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    slowest = float(proc.stdout.split("slowest in ")[1].split()[0])
    assert slowest < 2 * train.INTERRUPT_POLL_S + 1.0, proc.stdout
