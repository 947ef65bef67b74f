"""The graphed step (mnist_codec.codecs.graphs): what CUDA captures -- static order buffers, a
position advanced inside the step, warm-up then restore, the partial batch stepped outside --
replayed eagerly on the CPU trains exactly as plain eager steps do, in either precision, for
deep and vmapped conv stacks, with a schedule and weight decay (on a GPU: tests/test_gpu.py)."""

from __future__ import annotations

import pytest
import torch

from mnist_codec.codecs import train
from trainings import conv_job, deep_jobs


@pytest.mark.parametrize(
    "optim", [{}, {"precision": "bf16"}, {"schedule": "onecycle", "weight_decay": 1e-2}, {"conv": True}]
)
def test_the_graphed_path_replayed_eagerly_equals_eager_steps(digits, optim):
    # What CUDA captures (static order buffers, a position counter advanced inside the step,
    # warm-up then restore, the partial batch stepped outside), replayed eagerly on the CPU:
    # it must train exactly as plain eager steps do.
    from mnist_codec.codecs.device import configure_cpu

    x = torch.from_numpy(digits[0])  # 400 images at batch 96: four full batches and one of 16
    names = ["deep_relu", "deep_tanh", "deep_leaky_relu"]

    schedule = optim.get("schedule", "constant")
    wd = optim.get("weight_decay", 0.0)
    precision = optim.get("precision", "fp32")  # autocast inside the step

    def run(capture):
        jobs = deep_jobs(names)
        if optim.get("conv"):  # vmapped stacks: two seeds of a conv AE, and one alone
            jobs = [conv_job(f"conv{r}", r) for r in range(3)]
        stacks = [
            train.StackTrainer(jobs[:2], [[], []], [None, None], x, 96, 1e-3, schedule, 3, wd, precision=precision),
            train.StackTrainer(jobs[2:], [[]], [None], x, 96, 1e-3, schedule, 3, wd, precision=precision),
        ]  # two stacks, as CUDA may hold
        histories = [[], [], []]

        def emit(t, results):
            for k, r in zip([[0, 1], [2]][t], results, strict=True):
                histories[k].append(r)

        train._fit_together(stacks, x[:50], 3, 96, capture, emit)
        for t in stacks:
            t.unstack()
        return histories, jobs

    configure_cpu(1)
    replayed, replayed_jobs = run(lambda steps: steps)
    eager, eager_jobs = run(None)
    for a, b in zip(replayed, eager, strict=True):
        assert [(r.train_loss, r.eval_loss) for r in a] == [(r.train_loss, r.eval_loss) for r in b]
    for ja, jb in zip(replayed_jobs, eager_jobs, strict=True):
        for p, q in zip(ja.model.parameters(), jb.model.parameters(), strict=True):
            assert torch.equal(p, q)
