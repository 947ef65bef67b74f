"""The optimizer and its learning-rate schedule: Adam (AdamW with weight decay), one rate per epoch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, overload

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


def _unguarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """torch's ``method`` without the compiler guard around it, or the method itself where a
    torch version has none. The guard (``torch._disable_dynamo``) imports ``torch._dynamo`` the
    first time it runs: about 1.8 s of every training process, for a compiler nothing here uses."""
    return getattr(method, "__wrapped__", method)


class _Eager:
    """torch's fused Adam and AdamW, the same kernel and the same numbers, without the compiler
    guards on the methods a training calls (creating the optimizer, a step, zeroing the
    gradients, a checkpoint's state). Nothing is compiled here (a CUDA graph is captured, not
    compiled): the guards only import the compiler."""

    add_param_group = _unguarded(torch.optim.Optimizer.add_param_group)
    zero_grad = _unguarded(torch.optim.Optimizer.zero_grad)
    state_dict = _unguarded(torch.optim.Optimizer.state_dict)
    load_state_dict = _unguarded(torch.optim.Optimizer.load_state_dict)

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        with torch.no_grad():  # what the guard does for an optimizer that is not differentiable
            return _unguarded(torch.optim.Adam.step)(self, closure)  # AdamW's step is Adam's


class Adam(_Eager, torch.optim.Adam):
    pass


class AdamW(_Eager, torch.optim.AdamW):
    pass


def make_optimizer(
    params: Iterable[torch.Tensor], lr: float, device: torch.device, weight_decay: float = 0.0, scheduled: bool = False
) -> torch.optim.Optimizer:
    """The notebook's Adam as one fused kernel (torch's, without its compiler guards: :class:`Adam`);
    capturable on CUDA so a graph can replay it.

    With ``weight_decay`` it is AdamW (decoupled decay). With ``scheduled`` the rate is a
    tensor that :class:`~mnist_codec.codecs.trainer.StackTrainer` overwrites in place each epoch, so a captured CUDA
    graph reads the new value (a float would be baked into the graph).
    """
    rate = torch.tensor(lr, dtype=torch.float32, device=device) if scheduled else lr
    capturable = device.type == "cuda"
    if weight_decay:
        return AdamW(params, lr=rate, weight_decay=weight_decay, fused=True, capturable=capturable)
    return Adam(params, lr=rate, fused=True, capturable=capturable)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, lr: float, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """torch's ``LambdaLR`` over :func:`learning_rate`: one ``step()`` per finished epoch.

    The optimizer must be made with ``scheduled=True``: torch's schedulers write a tensor
    rate in place (``fill_``), so a captured CUDA graph reads each epoch's rate.
    """
    learning_rate(schedule, lr, 0, epochs)  # an unknown schedule fails here, before any work
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: learning_rate(schedule, lr, e, epochs) / lr)
