"""CUDA graphs: the full-batch steps of every stack captured once and replayed, so the GPU does
not wait on Python between tiny kernels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .trainer import StackTrainer


def cuda_capture(steps: Callable[[], None]) -> Callable[[], None]:
    """Capture ``steps`` in a CUDA graph (nothing runs now); return what replays it."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        steps()
    return graph.replay


class GraphedSteps:
    """The full-batch steps of several stacks, captured together as one replayable step.

    Each stack keeps its members' permutations in a static (S, n) buffer; a position counter
    on the device advances inside the step, so one replay is one step of every member of
    every stack, with no host work between steps. ``capture`` turns the step function into
    its replay: on CUDA, :func:`cuda_capture`; the identity replays it eagerly (how the
    tests check this logic on a CPU).
    """

    def __init__(
        self,
        trainers: Sequence[StackTrainer],
        batch_size: int,
        capture: Callable[[Callable[[], None]], Callable[[], None]],
    ):
        self.trainers, self.batch_size = trainers, batch_size
        device = trainers[0].device
        self.n_full = len(trainers[0].x) // batch_size
        self.orders = [
            torch.zeros(len(t.jobs), self.n_full * batch_size, dtype=torch.long, device=device) for t in trainers
        ]
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.arange = torch.arange(batch_size, device=device)
        saved = [t.snapshot() for t in trainers]
        try:
            self._warm_up(device)
            for t in trainers:
                t.zero_grad()
            self.replay = capture(self._steps)
        finally:
            for t, snapshot in zip(trainers, saved, strict=True):  # warm-up and capture leave no trace
                t.restore(snapshot)
            self.pos.zero_()

    def _steps(self) -> None:
        at = self.pos * self.batch_size + self.arange  # (B,) positions in this epoch's orders
        for t, order in zip(self.trainers, self.orders, strict=True):
            t.step(torch.index_select(order, 1, at))  # (S, B)
        self.pos.add_(1)

    def _warm_up(self, device: torch.device) -> None:
        """Run the steps (on a side stream on CUDA), so lazy state (Adam moments, cuBLAS)
        exists before capture."""
        if device.type != "cuda":
            for _ in range(3):
                self._steps()
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._steps()
        torch.cuda.current_stream().wait_stream(side)

    def epoch(self) -> None:
        b = self.batch_size
        for t, order in zip(self.trainers, self.orders, strict=True):
            order.copy_(t.perm[:, : self.n_full * b])
        self.pos.zero_()
        for _ in range(self.n_full):
            self.replay()
        for t in self.trainers:  # the last partial batch, eagerly, on the same weights and state
            if self.n_full * b < len(t.x):
                t.step(t.perm[:, self.n_full * b :])
