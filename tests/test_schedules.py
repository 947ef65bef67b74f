"""Learning-rate schedules (mnist_codec.codecs.schedules): where each starts, peaks and ends, and
that a schedule changes training while the default stays the notebook's constant Adam."""

from __future__ import annotations

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
    assert type(trainer.optimizer) is torch.optim.Adam and trainer.optimizer.defaults["fused"]
