"""Learning-rate schedules (mnist_codec.codecs.schedules): where each starts, peaks and ends, and
that a schedule changes training while the default stays the notebook's constant Adam."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise

import pytest
import torch

from mnist_codec.codecs import models, schedules, train


def test_schedules_start_end_and_peak_where_documented():
    lr, epochs = 1e-3, 10
    rates = {s: [schedules.learning_rate(s, lr, e, epochs) for e in range(epochs)] for s in schedules.SCHEDULES}
    assert rates["constant"] == [lr] * epochs
    cos = rates["cosine"]
    assert cos[0] == lr and all(a > b > 0 for a, b in pairwise(cos))
    assert cos[epochs // 2] == pytest.approx(lr / 2)
    one = rates["onecycle"]
    assert one[0] == pytest.approx(lr / 25 + (lr - lr / 25) / 3) and one[2] == pytest.approx(lr) == max(one)
    assert one[:3] == sorted(one[:3]) and one[2:] == sorted(one[2:], reverse=True)
    assert one[-1] == pytest.approx(lr / 1e4)
    assert [schedules.learning_rate("onecycle", lr, e, 1) for e in range(1)] == [lr]  # one epoch: the peak
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        schedules.learning_rate("step", lr, 0, epochs)


def test_a_schedule_changes_training_and_the_default_is_the_notebooks_adam(digits):
    xt = torch.from_numpy(digits[0])
    spec = {"kind": "deep", "latent_dim": 8, "hidden": [32, 16], "activation": "relu"}
    start = models.build(spec).state_dict()

    def run(**optim):
        model = models.build(spec)
        model.load_state_dict(start)
        return [
            r.train_loss
            for r in train.fit(
                model,
                xt,
                xt[:50],
                name="m",
                epochs=3,
                batch_size=64,
                lr=1e-3,
                generator=torch.Generator().manual_seed(1),
                cores=1,
                **optim,
            )
        ]

    default = run()
    assert run(schedule="constant", weight_decay=0.0) == default
    assert run(schedule="cosine") != default and run(weight_decay=1e-2) != default
    trainer = train.StackTrainer([train.Job("m", models.build(spec), torch.Generator())], [[]], [None], xt, 64, 1e-3)
    assert type(trainer.optimizer) is schedules.Adam and trainer.optimizer.defaults["fused"]


@pytest.mark.parametrize(("name", "options"), [("Adam", {}), ("AdamW", {"weight_decay": 1e-2})])
def test_the_optimizer_is_torchs_fused_adam_number_for_number(name, options):
    """Steps, a schedule that writes the rate in place, zeroed gradients and a checkpoint's
    state round trip: the weights and moments equal torch's own optimizer's, bit for bit."""

    def run(cls):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.ReLU(), torch.nn.Linear(8, 20))
        opt = cls(model.parameters(), lr=torch.tensor(1e-3), fused=True, **options)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)
        x = torch.randn(64, 20)
        for i in range(30):
            opt.zero_grad(set_to_none=True)
            ((model(x) - x) ** 2).mean().backward()
            opt.step()
            if i % 10 == 9:
                scheduler.step()
            if i == 14:
                opt.load_state_dict(opt.state_dict())
        moments = [t for p in model.parameters() for t in (opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"])]
        return [*model.parameters(), *moments]

    mine, theirs = run(getattr(schedules, name)), run(getattr(torch.optim, name))
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))


def test_training_never_imports_torchs_compiler():
    """torch's compiler guards import torch._dynamo (about 1.8 s of a training stage) for
    nothing: a training process that creates, steps and checkpoints the optimizer never loads it."""
    script = """
import sys, torch
from mnist_codec.codecs import models, train
x = torch.rand(256, 784)
for kind in ("ae", "deep"):
    spec = {"kind": kind, "latent_dim": 4, "hidden": [8], "activation": "relu"}
    jobs = [train.Job(kind, models.build(spec), torch.Generator().manual_seed(0))]
    decay = 0.01 if kind == "ae" else 0.0  # AdamW, then Adam
    train.fit_many(jobs, x, x[:32], epochs=2, batch_size=64, lr=1e-3, cores=1, weight_decay=decay)
print(sorted(m for m in sys.modules if m.startswith("torch._dynamo")))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
