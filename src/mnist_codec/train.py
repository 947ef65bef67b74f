"""Training loop for the autoencoders.

The whole split lives as one tensor on the device; each epoch draws a permutation from the
model's own generator and slices batches from it. Losses are summed on the device and read
back once per epoch, so the host does not wait on the device at every step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .errors import TrainingError


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float  # mean per-pixel MSE over the epoch's batches, weighted by batch size
    eval_loss: float  # per-pixel MSE of the model after the epoch, on the evaluation split
    seconds: float


@torch.no_grad()
def reconstruction_mse(model: nn.Module, x: torch.Tensor, chunk: int = 8192) -> float:
    """Mean per-pixel squared error of model(x) against x, computed in chunks."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, len(x), chunk):
        xb = x[i: i + chunk]
        total += torch.sum((model(xb) - xb) ** 2, dtype=torch.float64)
    return float(total.item() / x.numel())


def fit(
    model: nn.Module,
    train_x: torch.Tensor,
    eval_x: torch.Tensor,
    *,
    name: str,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> list[EpochResult]:
    """Train ``model`` to reconstruct ``train_x`` (N, 784) with Adam and MSE.

    Every batch is used, the last partial one included. Raises TrainingError naming the
    model and epoch if the loss stops being finite.
    """
    if len(train_x) == 0:
        raise TrainingError(f"{name}: no training images")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(train_x)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=generator).to(train_x.device)
        total = torch.zeros((), dtype=torch.float64, device=train_x.device)
        for i in range(0, n, batch_size):
            xb = train_x[perm[i: i + batch_size]]  # (B, 784)
            loss = nn.functional.mse_loss(model(xb), xb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(xb)
        train_loss = float(total.item() / n)
        if not math.isfinite(train_loss):
            raise TrainingError(f"{name}: training loss became {train_loss} in epoch {epoch}; lower train.lr")
        eval_loss = reconstruction_mse(model, eval_x)
        result = EpochResult(epoch, train_loss, eval_loss, time.perf_counter() - start)
        history.append(result)
        if on_epoch is not None:
            on_epoch(result)
    model.eval()
    return history
