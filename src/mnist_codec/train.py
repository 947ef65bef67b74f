"""Training loop for the autoencoders: the notebook's maths without its overhead.

What each model computes is the notebook's: Adam, per-pixel MSE, batches of ``batch_size``
drawn from a fresh permutation every epoch, the last partial batch included. The speed
comes from how it is run:

* the split lives as one tensor on the device and batches are gathered by index from it,
  with no DataLoader collating single images;
* losses are summed on the device and read back once per epoch, not once per step;
* Adam is the fused kernel (one call per step for all parameters);
* on CUDA the whole full-batch step of every model is captured once in a CUDA graph and
  replayed, so the GPU does not wait on Python between tiny kernels; the last partial
  batch runs eagerly on the same weights and optimizer state;
* on a multi-core CPU, several models train at once, one per worker thread, each on its
  own share of the cores (small matrix products use one core better than two).

Each model draws its data order from its own generator, so its result does not depend on
which models train beside it, or on the schedule.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .errors import TrainingError


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float  # mean per-pixel MSE over the epoch's batches, weighted by batch size
    eval_loss: float  # per-pixel MSE of the model after the epoch, on the evaluation split
    seconds: float


@dataclass(frozen=True)
class Checkpoint:
    """Where a model's end-of-epoch state is kept, and what it must match to be resumed.

    ``fingerprint`` names everything the training depends on (spec, params, seed, data);
    a checkpoint written under another fingerprint is ignored, never resumed.
    """

    path: Path
    fingerprint: str


@dataclass
class Job:
    """One model to train: its name (for errors and logs), module and data-order generator."""

    name: str
    model: nn.Module
    generator: torch.Generator
    on_epoch: Callable[[EpochResult], None] | None = None
    checkpoint: Checkpoint | None = None


@torch.no_grad()
def reconstruction_mse(model: nn.Module, x: torch.Tensor, chunk: int = 8192) -> float:
    """Mean per-pixel squared error of model(x) against x, computed in chunks."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, len(x), chunk):
        xb = x[i: i + chunk]
        total += torch.sum((model(xb) - xb) ** 2, dtype=torch.float64)
    return float(total.item() / x.numel())


def make_optimizer(model: nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    """The notebook's Adam as one fused kernel; capturable on CUDA so a graph can replay it."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True, capturable=device.type == "cuda")


class _ModelTrainer:
    """One model's optimizer, data order and on-device loss sum."""

    def __init__(self, job: Job, x: torch.Tensor, batch_size: int, lr: float):
        self.job, self.x, self.batch_size = job, x, batch_size
        self.device = x.device
        self.optimizer = make_optimizer(job.model, lr, self.device)
        self.total = torch.zeros((), dtype=torch.float64, device=self.device)
        self.perm = torch.empty(0, dtype=torch.long, device=self.device)
        self.history: list[EpochResult] = []

    def resume(self) -> None:
        """Continue from the job's checkpoint, if one matches: weights, Adam, data order, epochs."""
        ck = self.job.checkpoint
        if ck is None or not ck.path.exists():
            return
        try:
            blob = torch.load(ck.path, map_location="cpu", weights_only=True)
            usable = isinstance(blob, dict) and blob.get("fingerprint") == ck.fingerprint
        except Exception as exc:  # unreadable (cut short, say): start over rather than trust it
            print(f"{self.job.name}: ignoring unreadable checkpoint {ck.path} ({type(exc).__name__})",
                  file=sys.stderr)
            return
        if not usable:  # written for other params or data
            return
        self.job.model.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.job.generator.set_state(blob["generator"])
        self.history = [EpochResult(**r) for r in blob["history"]]
        print(f"{self.job.name}: resuming after epoch {len(self.history)} from {ck.path}", file=sys.stderr)

    def save_checkpoint(self) -> None:
        ck = self.job.checkpoint
        if ck is None:
            return
        from .fileio import atomic_path

        blob = {"fingerprint": ck.fingerprint, "model": self.job.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.job.generator.get_state(),
                "history": [asdict(r) for r in self.history]}
        with atomic_path(ck.path) as tmp:
            torch.save(blob, tmp)

    def new_epoch(self) -> None:
        # drawn on the CPU from the model's generator: the same order on every device
        self.perm = torch.randperm(len(self.x), generator=self.job.generator).to(self.device)
        self.total.zero_()
        self.job.model.train()

    def step(self, idx: torch.Tensor) -> None:
        """One Adam step on the images ``x[idx]``; adds the batch's summed loss to ``total``."""
        xb = torch.index_select(self.x, 0, idx)  # (B, 784)
        loss = nn.functional.mse_loss(self.job.model(xb), xb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.total.add_(loss.detach(), alpha=len(idx))

    def eager_epoch(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        b = self.batch_size
        for i in range(0, len(self.x), b):
            if should_stop():
                return
            self.step(self.perm[i: i + b])

    def finish_epoch(self, epoch: int, eval_x: torch.Tensor, start: float) -> EpochResult:
        train_loss = float(self.total.item() / len(self.x))  # the epoch's one host sync
        if not math.isfinite(train_loss):
            raise TrainingError(f"{self.job.name}: training loss became {train_loss} in epoch {epoch}; "
                                "lower train.lr")
        eval_loss = reconstruction_mse(self.job.model, eval_x)
        result = EpochResult(epoch, train_loss, eval_loss, time.perf_counter() - start)
        self.history.append(result)
        self.save_checkpoint()
        return result


def cuda_capture(steps: Callable[[], None]) -> Callable[[], None]:
    """Capture ``steps`` in a CUDA graph (nothing runs now); return what replays it."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        steps()
    return graph.replay


class _GraphedSteps:
    """The full-batch steps of several models, captured together as one replayable step.

    Each model keeps its own permutation in a static buffer; a position counter on the
    device advances inside the step, so one replay is one step of every model, with no host
    work between steps. ``capture`` turns the step function into its replay: on CUDA,
    :func:`cuda_capture`; the identity replays it eagerly (how the tests check this logic
    on a CPU).
    """

    def __init__(self, trainers: Sequence[_ModelTrainer], batch_size: int,
                 capture: Callable[[Callable[[], None]], Callable[[], None]]):
        self.trainers, self.batch_size = trainers, batch_size
        device = trainers[0].device
        self.n_full = len(trainers[0].x) // batch_size
        self.orders = [torch.zeros(self.n_full * batch_size, dtype=torch.long, device=device) for _ in trainers]
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.arange = torch.arange(batch_size, device=device)
        saved = [({k: v.clone() for k, v in t.job.model.state_dict().items()},
                  {p: {k: v.clone() for k, v in st.items() if torch.is_tensor(v)}
                   for p, st in t.optimizer.state.items()})  # non-empty when resumed
                 for t in trainers]
        try:
            self._warm_up(device)
            for t in trainers:
                t.optimizer.zero_grad(set_to_none=True)
            self.replay = capture(self._steps)
        finally:
            self._restore(saved)  # warm-up and capture leave no trace

    def _steps(self) -> None:
        at = self.pos * self.batch_size + self.arange  # (B,) positions in this epoch's order
        for t, order in zip(self.trainers, self.orders):
            t.step(torch.index_select(order, 0, at))
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

    @torch.no_grad()
    def _restore(self, saved: list[tuple[dict, dict]]) -> None:
        for t, (weights, adam) in zip(self.trainers, saved):
            t.job.model.load_state_dict(weights)  # copies into the same tensors the graph uses
            for p, st in t.optimizer.state.items():
                for k, v in st.items():
                    if torch.is_tensor(v):  # back to the resumed moments, or to zero moments and step 0
                        v.copy_(adam[p][k]) if p in adam else v.zero_()
            t.total.zero_()
        self.pos.zero_()

    def epoch(self) -> None:
        b = self.batch_size
        for t, order in zip(self.trainers, self.orders):
            order.copy_(t.perm[: self.n_full * b])
        self.pos.zero_()
        for _ in range(self.n_full):
            self.replay()
        for t in self.trainers:  # the last partial batch, eagerly, on the same weights and state
            if self.n_full * b < len(t.x):
                t.step(t.perm[self.n_full * b:])


def fit_many(
    jobs: Sequence[Job],
    train_x: torch.Tensor,
    eval_x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    cuda_graphs: bool | None = None,
    cores: int | None = None,
) -> list[list[EpochResult]]:
    """Train every job's model to reconstruct ``train_x`` (N, 784); return each one's history.

    ``on_epoch`` callbacks run in the calling thread, in the order epochs finish.
    ``cuda_graphs`` (default: on when the data is on CUDA) captures the steps in a graph;
    ``cores`` (default: what the process may use) sets the CPU worker plan.
    Raises TrainingError naming the model and epoch if a loss stops being finite.
    """
    if len(train_x) == 0:
        raise TrainingError(f"{jobs[0].name if jobs else 'training'}: no training images")
    trainers = [_ModelTrainer(job, train_x, batch_size, lr) for job in jobs]

    def emit(k: int, result: EpochResult) -> None:
        if jobs[k].on_epoch is not None:
            jobs[k].on_epoch(result)

    for k, t in enumerate(trainers):
        t.resume()
        for result in t.history:  # epochs done before an interruption are reported again
            emit(k, result)

    if train_x.device.type == "cuda":
        use_graphs = cuda_graphs if cuda_graphs is not None else True
        _fit_together(trainers, eval_x, epochs, batch_size, cuda_capture if use_graphs else None, emit)
    else:
        from .device import configure_cpu, cpu_plan

        workers, threads = cpu_plan(len(jobs), cores)
        configure_cpu(threads)
        if workers == 1:
            _fit_together(trainers, eval_x, epochs, batch_size, None, emit)
        else:
            _fit_threaded(trainers, eval_x, epochs, workers, threads, emit)
    for job in jobs:
        job.model.eval()
    return [t.history[:epochs] for t in trainers]


def fit(model: nn.Module, train_x: torch.Tensor, eval_x: torch.Tensor, *, name: str, epochs: int,
        batch_size: int, lr: float, generator: torch.Generator,
        on_epoch: Callable[[EpochResult], None] | None = None, **kwargs) -> list[EpochResult]:
    """Train one model; see fit_many."""
    return fit_many([Job(name, model, generator, on_epoch)], train_x, eval_x, epochs=epochs,
                    batch_size=batch_size, lr=lr, **kwargs)[0]


def _fit_together(trainers, eval_x, epochs, batch_size, capture, emit) -> None:
    """All models step by step in this thread; with ``capture``, one replay steps them all."""
    graphed = None
    if capture is not None and len(trainers[0].x) >= batch_size:
        try:
            graphed = _GraphedSteps(trainers, batch_size, capture)
        except RuntimeError as exc:  # e.g. an op this torch build cannot capture: same maths, eagerly
            print(f"training: CUDA graph capture failed ({exc}); stepping eagerly", file=sys.stderr)
            for t in trainers:
                t.optimizer.zero_grad(set_to_none=True)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        due = [k for k, t in enumerate(trainers) if len(t.history) < epoch]  # resumed ones may be ahead
        for k in due:
            trainers[k].new_epoch()
        if graphed is not None and len(due) == len(trainers):
            graphed.epoch()
        else:
            for k in due:
                trainers[k].eager_epoch()
        for k in due:
            emit(k, trainers[k].finish_epoch(epoch, eval_x, start))


def _fit_threaded(trainers, eval_x, epochs, workers, threads, emit) -> None:
    """Model-epochs spread over worker threads; results come back here in finishing order."""
    from .device import configure_cpu

    busy = [False] * len(trainers)
    lock = threading.Lock()
    stop = threading.Event()
    results: queue.Queue = queue.Queue()

    def next_task() -> int | None:
        with lock:
            # a model's history only grows while it is busy, so these lengths are settled
            done = [len(t.history) for t in trainers]  # more than 0 where a checkpoint was resumed
            ready = [k for k in range(len(trainers)) if not busy[k] and done[k] < epochs]
            if not ready:
                return None
            k = min(ready, key=lambda j: (done[j], j))  # the model furthest behind
            busy[k] = True
            return k

    def work() -> None:
        configure_cpu(threads)  # thread-local settings (denormals) must be set in each thread
        try:
            while not stop.is_set():
                k = next_task()
                if k is None:
                    return
                t, start = trainers[k], time.perf_counter()
                t.new_epoch()
                t.eager_epoch(stop.is_set)
                if stop.is_set():
                    return
                result = t.finish_epoch(len(t.history) + 1, eval_x, start)
                with lock:
                    busy[k] = False
                results.put((k, result))
        except BaseException as exc:  # handed to the calling thread, which raises it
            stop.set()
            results.put((None, exc))

    remaining = sum(max(0, epochs - len(t.history)) for t in trainers)
    pool = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for th in pool:
        th.start()
    try:
        for _ in range(remaining):
            k, item = results.get()
            if k is None:
                raise item
            emit(k, item)
    finally:
        stop.set()
        for th in pool:
            th.join()
