"""Models trained together in one stack (mnist_codec.codecs.stacking): a model in a stack of three
trains as in a stack of one, conv autoencoders in one vmapped stack as each alone, bf16 reaches a
stacked convolution, and a stack refuses models of other structures or with buffers."""

from __future__ import annotations

import pytest
import torch

from mnist_codec.codecs import models, train
from mnist_codec.codecs.seeding import derive_seed, seed_everything
from trainings import SPECS, conv_job, deep_jobs


def test_a_model_in_a_stack_of_three_matches_it_in_a_stack_of_one(digits):
    x, _ = digits
    xt = torch.from_numpy(x)
    names = ["deep_relu", "deep_tanh", "deep_leaky_relu"]
    seen = []
    together = deep_jobs(names)
    for job in together:
        job.on_epoch = lambda r, name=job.name: seen.append((name, r.epoch))
    # one stack of three on two cores; then each model in a stack of one, on one core
    histories = train.fit_many(together, xt, xt[:50], epochs=3, batch_size=64, lr=1e-3, cores=2)
    for job, history in zip(deep_jobs(names), histories, strict=True):
        alone = train.fit_many([job], xt, xt[:50], epochs=3, batch_size=64, lr=1e-3, cores=1)[0]
        assert [r.train_loss for r in alone] == pytest.approx([r.train_loss for r in history], rel=1e-6, abs=0)
        assert [r.eval_loss for r in alone] == pytest.approx([r.eval_loss for r in history], rel=1e-6, abs=0)
    assert sorted(seen) == sorted((n, e) for n in names for e in (1, 2, 3))  # every epoch reported once
    for name in names:  # and in order, per model
        assert [e for n, e in seen if n == name] == [1, 2, 3]


def test_conv_models_in_one_vmapped_stack_match_each_trained_alone(digits):
    # three seeds of a conv AE in one stack (parameters (3, ...), the module under vmap) and
    # each in a stack of one (the module itself): the same losses and weights
    from mnist_codec.codecs.stacking import FunctionalStack

    xt = torch.from_numpy(digits[0])

    def deep_jobs():
        return [conv_job(f"conv/seed{r}", derive_seed(3, f"c{r}")) for r in range(3)]

    together = deep_jobs()
    trainer = train.StackTrainer(together, [[], [], []], [None] * 3, xt, 64, 1e-3)
    assert isinstance(trainer.stack, FunctionalStack) and trainer.stack.size == 3
    histories = train.fit_many(together, xt, xt[:50], epochs=2, batch_size=64, lr=1e-3, stacks_per_group=1)
    for job, history in zip(deep_jobs(), histories, strict=True):
        alone = train.fit_many([job], xt, xt[:50], epochs=2, batch_size=64, lr=1e-3, cores=1)[0]
        assert [r.train_loss for r in alone] == pytest.approx([r.train_loss for r in history], rel=1e-5)
        assert [r.eval_loss for r in alone] == pytest.approx([r.eval_loss for r in history], rel=1e-5)
    for a, b in zip(together, deep_jobs(), strict=True):  # trained weights came back into each job's own module
        assert not all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_a_stack_refuses_mixed_structures_and_buffers():
    from mnist_codec.codecs.stacking import FunctionalStack, make_stack

    with pytest.raises(ValueError, match="one structure"):
        make_stack([models.build(SPECS["conv"]), models.build({**SPECS["conv"], "channels": [4, 4]})])
    with pytest.raises(ValueError, match="buffers"):
        FunctionalStack([torch.nn.Sequential(torch.nn.Linear(784, 8), torch.nn.BatchNorm1d(8))])


def test_bf16_reaches_the_convolutions_of_a_stacked_conv_ae(digits):
    """vmap's batched convolution runs beneath autocast, so a functional stack casts for it: the
    stack's convolutions compute in bf16 (its output under the trainer's autocast is bf16), and a
    conv AE in bf16 gives the same losses stacked with another as alone, within bf16's own
    rounding (native bf16 kernels, AVX512-BF16 here, round a batched convolution in another
    order than a single one: 1e-4 apart, where emulated bf16 gave the same numbers)."""
    x = torch.from_numpy(digits[0][:256])
    spec = {"kind": "conv", "latent_dim": 8, "channels": [4, 8], "activation": "relu"}

    def losses(n, precision):
        torch.manual_seed(0)
        jobs = [train.Job(f"conv/{i}", models.build(spec), seed_everything(i)) for i in range(n)]
        histories = train.fit_many(
            jobs, x, x[:64], epochs=2, batch_size=64, lr=1e-3, precision=precision, stacks_per_group=1
        )
        return [r.train_loss for r in histories[0]]

    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        jobs = [train.Job(f"conv/{i}", models.build(spec), seed_everything(i)) for i in range(2)]
        trainer = train.StackTrainer(jobs, [[], []], [None, None], x, 64, 1e-3, precision=precision)
        with trainer.products():
            assert trainer.stack(x[:64].expand(2, -1, -1)).dtype == dtype
    alone, stacked = losses(1, "bf16"), losses(2, "bf16")
    assert stacked == pytest.approx(alone, rel=1e-3)
    assert alone != losses(1, "fp32") and alone == pytest.approx(losses(1, "fp32"), rel=0.01)
