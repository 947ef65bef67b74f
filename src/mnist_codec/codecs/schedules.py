"""The optimizer and its learning-rate schedule: Adam (AdamW with weight decay), one rate per epoch."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

SCHEDULES = ("constant", "cosine", "onecycle")
ONECYCLE_WARMUP = 0.3  # share of the epochs spent rising, as torch's OneCycleLR (pct_start)
ONECYCLE_START, ONECYCLE_END = 1 / 25, 1 / 1e4  # of lr, at the first and the last epoch


def learning_rate(schedule: str, lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based) of ``epochs``; it holds for the epoch.

    * ``constant``: ``lr`` throughout (the notebook's);
    * ``cosine``: half a cosine from ``lr`` down, ``lr * (1 + cos(pi * epoch / epochs)) / 2``;
    * ``onecycle``: a linear rise from ``lr/25`` to ``lr`` over the first 30% of the epochs,
      then half a cosine down to ``lr/1e4`` at the last one.
    """
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
    if schedule == "onecycle":
        rise = max(1, round(ONECYCLE_WARMUP * epochs))
        if epoch < rise:
            low = lr * ONECYCLE_START
            return low + (lr - low) * (epoch + 1) / rise
        fall, end = epochs - rise, lr * ONECYCLE_END
        return end + (lr - end) * (1 + math.cos(math.pi * (epoch - rise + 1) / fall)) / 2
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; one of {', '.join(SCHEDULES)}")


def make_optimizer(
    params: Iterable[torch.Tensor], lr: float, device: torch.device, weight_decay: float = 0.0, scheduled: bool = False
) -> torch.optim.Optimizer:
    """The notebook's Adam as one fused kernel; capturable on CUDA so a graph can replay it.

    With ``weight_decay`` it is AdamW (decoupled decay). With ``scheduled`` the rate is a
    tensor that :class:`~mnist_codec.codecs.trainer.StackTrainer` overwrites in place each epoch, so a captured CUDA
    graph reads the new value (a float would be baked into the graph).
    """
    rate = torch.tensor(lr, dtype=torch.float32, device=device) if scheduled else lr
    capturable = device.type == "cuda"
    if weight_decay:
        return torch.optim.AdamW(params, lr=rate, weight_decay=weight_decay, fused=True, capturable=capturable)
    return torch.optim.Adam(params, lr=rate, fused=True, capturable=capturable)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, lr: float, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """torch's ``LambdaLR`` over :func:`learning_rate`: one ``step()`` per finished epoch.

    The optimizer must be made with ``scheduled=True``: torch's schedulers write a tensor
    rate in place (``fill_``), so a captured CUDA graph reads each epoch's rate.
    """
    learning_rate(schedule, lr, 0, epochs)  # an unknown schedule fails here, before any work
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: learning_rate(schedule, lr, e, epochs) / lr)
