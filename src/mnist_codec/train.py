"""Training loop for the autoencoders: the notebook's maths without its overhead.

What each model computes is the notebook's: Adam, per-pixel MSE, batches of ``batch_size``
drawn from a fresh permutation every epoch, the last partial batch included. Beyond the
notebook, params may set a learning-rate schedule (set at the start of each epoch, see
:func:`learning_rate`) and decoupled weight decay (AdamW); with the defaults (constant rate,
no decay) the optimizer is the notebook's Adam, number for number. The speed comes from how
it is run:

* models of one layout (every seed of every activation) train in stacks: one batched
  matrix product per layer for all members of a stack, or, for the convolutional AE, the
  module mapped over stacked parameters with ``torch.func.vmap`` (:mod:`mnist_codec.stacking`);
* the split lives as one tensor on the device and batches are gathered by index from it,
  with no DataLoader collating single images;
* losses are summed on the device and read back once per epoch, not once per step;
* Adam is the fused kernel (one call per step for all parameters);
* on CUDA the whole full-batch step of every stack is captured once in a CUDA graph and
  replayed, so the GPU does not wait on Python between tiny kernels; the last partial
  batch runs eagerly on the same weights and optimizer state;
* on a CPU the models are cut into about one stack per core, each stepped by its own
  worker thread on one core (a lone stack gets every core); on CUDA they are one stack.

Each model draws its data order from its own generator and is stepped on its own batch, so
its result does not depend on which models share its stack, or on the schedule.
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
from .stacking import layout, make_stack


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


def make_optimizer(params, lr: float, device: torch.device, weight_decay: float = 0.0,
                   scheduled: bool = False) -> torch.optim.Optimizer:
    """The notebook's Adam as one fused kernel; capturable on CUDA so a graph can replay it.

    With ``weight_decay`` it is AdamW (decoupled decay). With ``scheduled`` the rate is a
    tensor that :class:`_StackTrainer` overwrites in place each epoch, so a captured CUDA
    graph reads the new value (a float would be baked into the graph).
    """
    rate = torch.tensor(lr, dtype=torch.float32, device=device) if scheduled else lr
    kwargs = {"fused": True, "capturable": device.type == "cuda"}
    if weight_decay:
        return torch.optim.AdamW(params, lr=rate, weight_decay=weight_decay, **kwargs)
    return torch.optim.Adam(params, lr=rate, **kwargs)


CHECKPOINT_FORMAT = 3  # a member's weights, its slices of Adam's moments (in the stack's layout), data order, history


def _read_checkpoint(job: Job) -> dict | None:
    """The job's checkpoint if one exists, is readable and was written for this job; else None."""
    ck = job.checkpoint
    if ck is None or not ck.path.exists():
        return None
    try:
        blob = torch.load(ck.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable (cut short, say): start over rather than trust it
        print(f"{job.name}: ignoring unreadable checkpoint {ck.path} ({type(exc).__name__})", file=sys.stderr)
        return None
    if not isinstance(blob, dict) or blob.get("fingerprint") != ck.fingerprint \
            or blob.get("format") != CHECKPOINT_FORMAT:  # written for other params, data or code
        return None
    return blob


class _StackTrainer:
    """Models of one layout trained as one stack: one optimizer, data orders (S, N), loss sums (S,).

    Every member draws its data order from its own generator and is stepped on its own
    batch, so its numbers do not depend on the other members.
    """

    def __init__(self, jobs: Sequence[Job], histories: Sequence[list[EpochResult]],
                 adam: Sequence[dict | None], x: torch.Tensor, batch_size: int, lr: float,
                 schedule: Callable[[int], float] | None = None, weight_decay: float = 0.0):
        self.jobs, self.x, self.batch_size = list(jobs), x, batch_size
        self.device = x.device
        self.schedule = schedule  # epoch index -> learning rate; None: ``lr`` throughout
        self.stack = make_stack([j.model for j in jobs]).to(self.device)
        self.optimizer = make_optimizer(self.stack.parameters(), lr, self.device, weight_decay,
                                        scheduled=schedule is not None)
        self.total = torch.zeros(len(jobs), dtype=torch.float64, device=self.device)
        self.perm = torch.empty(len(jobs), 0, dtype=torch.long, device=self.device)
        self.histories = [list(h) for h in histories]
        if any(a is not None for a in adam):  # resumed: every member at the same epoch, so one step count
            self._load_adam(adam)

    @property
    def epochs_done(self) -> int:
        return len(self.histories[0])

    def _load_adam(self, adam: Sequence[dict]) -> None:
        state = {i: {"step": torch.tensor(float(adam[0]["step"])),
                     "exp_avg": torch.stack([a["exp_avg"][i] for a in adam]),
                     "exp_avg_sq": torch.stack([a["exp_avg_sq"][i] for a in adam])}
                 for i in range(len(list(self.stack.parameters())))}
        self.optimizer.load_state_dict({"state": state, "param_groups": self.optimizer.state_dict()["param_groups"]})

    def _member_adam(self, k: int) -> dict:
        states = [self.optimizer.state[p] for p in self.stack.parameters()]
        return {"step": float(states[0]["step"]), "exp_avg": [s["exp_avg"][k].cpu() for s in states],
                "exp_avg_sq": [s["exp_avg_sq"][k].cpu() for s in states]}

    def save_checkpoints(self) -> None:
        from .fileio import atomic_path

        for k, job in enumerate(self.jobs):
            ck = job.checkpoint
            if ck is None:
                continue
            self.stack.unstack_into(k, job.model)
            blob = {"format": CHECKPOINT_FORMAT, "fingerprint": ck.fingerprint,
                    "model": {n: t.cpu() for n, t in job.model.state_dict().items()},
                    "adam": self._member_adam(k), "generator": job.generator.get_state(),
                    "history": [asdict(r) for r in self.histories[k]]}
            with atomic_path(ck.path) as tmp:
                torch.save(blob, tmp)

    def new_epoch(self) -> None:
        # drawn on the CPU from each member's generator: the same order on every device
        self.perm = torch.stack([torch.randperm(len(self.x), generator=j.generator) for j in self.jobs]).to(self.device)
        self.total.zero_()
        self.stack.train()
        if self.schedule is not None:  # in place: a captured graph holds this tensor
            for group in self.optimizer.param_groups:
                group["lr"].fill_(self.schedule(self.epochs_done))

    def step(self, idx: torch.Tensor) -> None:
        """One Adam step of every member, member k on the images ``x[idx[k]]``; idx is (S, b)."""
        s, b = idx.shape
        xb = torch.index_select(self.x, 0, idx.reshape(-1)).view(s, b, -1)  # (S, b, 784)
        diff = self.stack(xb) - xb
        per_member = torch.mean(diff * diff, dim=(1, 2))  # (S,): each member's batch MSE
        self.optimizer.zero_grad(set_to_none=True)
        per_member.sum().backward()  # the sum's gradient for a member is its own loss's gradient
        self.optimizer.step()
        self.total.add_(per_member.detach(), alpha=b)

    def eager_epoch(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        b = self.batch_size
        for i in range(0, len(self.x), b):
            if should_stop():
                return
            self.step(self.perm[:, i: i + b])

    def finish_epoch(self, epoch: int, eval_x: torch.Tensor, start: float) -> list[EpochResult]:
        train_losses = (self.total / len(self.x)).tolist()  # the epoch's one host sync
        for job, loss in zip(self.jobs, train_losses):
            if not math.isfinite(loss):
                raise TrainingError(f"{job.name}: training loss became {loss} in epoch {epoch}; lower train.lr")
        eval_losses = self.stack.reconstruction_mse(eval_x).tolist()
        seconds = time.perf_counter() - start
        results = [EpochResult(epoch, t, e, seconds) for t, e in zip(train_losses, eval_losses)]
        for history, result in zip(self.histories, results):
            history.append(result)
        self.save_checkpoints()
        return results

    def unstack(self) -> None:
        """Copy the trained weights back into the jobs' own modules."""
        for k, job in enumerate(self.jobs):
            self.stack.unstack_into(k, job.model)
            job.model.eval()


def cuda_capture(steps: Callable[[], None]) -> Callable[[], None]:
    """Capture ``steps`` in a CUDA graph (nothing runs now); return what replays it."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        steps()
    return graph.replay


class _GraphedSteps:
    """The full-batch steps of several stacks, captured together as one replayable step.

    Each stack keeps its members' permutations in a static (S, n) buffer; a position counter
    on the device advances inside the step, so one replay is one step of every member of
    every stack, with no host work between steps. ``capture`` turns the step function into
    its replay: on CUDA, :func:`cuda_capture`; the identity replays it eagerly (how the
    tests check this logic on a CPU).
    """

    def __init__(self, trainers: Sequence[_StackTrainer], batch_size: int,
                 capture: Callable[[Callable[[], None]], Callable[[], None]]):
        self.trainers, self.batch_size = trainers, batch_size
        device = trainers[0].device
        self.n_full = len(trainers[0].x) // batch_size
        self.orders = [torch.zeros(len(t.jobs), self.n_full * batch_size, dtype=torch.long, device=device)
                       for t in trainers]
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.arange = torch.arange(batch_size, device=device)
        saved = [({k: v.clone() for k, v in t.stack.state_dict().items()},
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
        at = self.pos * self.batch_size + self.arange  # (B,) positions in this epoch's orders
        for t, order in zip(self.trainers, self.orders):
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

    @torch.no_grad()
    def _restore(self, saved: list[tuple[dict, dict]]) -> None:
        for t, (weights, adam) in zip(self.trainers, saved):
            t.stack.load_state_dict(weights)  # copies into the same tensors the graph uses
            for p, st in t.optimizer.state.items():
                for k, v in st.items():
                    if torch.is_tensor(v):  # back to the resumed moments, or to zero moments and step 0
                        v.copy_(adam[p][k]) if p in adam else v.zero_()
            t.total.zero_()
        self.pos.zero_()

    def epoch(self) -> None:
        b = self.batch_size
        for t, order in zip(self.trainers, self.orders):
            order.copy_(t.perm[:, : self.n_full * b])
        self.pos.zero_()
        for _ in range(self.n_full):
            self.replay()
        for t in self.trainers:  # the last partial batch, eagerly, on the same weights and state
            if self.n_full * b < len(t.x):
                t.step(t.perm[:, self.n_full * b:])


def _stacks(jobs: Sequence[Job], histories: Sequence[list], parts: int) -> list[list[int]]:
    """Job indices per stack: one layout and one number of epochs done (resumed jobs may be
    ahead) per stack, in job order. A group of n such jobs is cut into stacks of
    ``max(1, n // parts)``, so ``parts`` workers share them evenly epoch by epoch (9 models
    on 2 cores: stacks of 4, 4 and 1; 3 models: three stacks of one)."""
    groups: dict[tuple, list[int]] = {}
    for k, job in enumerate(jobs):
        groups.setdefault((layout(job.model), len(histories[k])), []).append(k)
    from .device import stack_sizes

    stacks = []
    for members in groups.values():
        start = 0
        for size in stack_sizes(len(members), parts):
            stacks.append(members[start: start + size])
            start += size
    return stacks


def fit_many(
    jobs: Sequence[Job],
    train_x: torch.Tensor,
    eval_x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    schedule: str = "constant",
    weight_decay: float = 0.0,
    cuda_graphs: bool | None = None,
    cores: int | None = None,
    stacks_per_group: int | None = None,
) -> list[list[EpochResult]]:
    """Train every job's model to reconstruct ``train_x`` (N, 784); return each one's history.

    ``schedule`` names the learning-rate schedule over ``epochs`` (:func:`learning_rate`);
    ``weight_decay`` > 0 makes the optimizer AdamW.

    Models of one layout train in stacks (see :mod:`mnist_codec.stacking`): on CUDA one
    stack, all in one graph; on a CPU about one stack per core (``stacks_per_group``
    overrides), since on the CPUs measured a batched product on one core does as much per
    second as on two. Where a model trains does not change its losses (to 1e-6).
    ``on_epoch`` callbacks run in the calling thread, in the order epochs finish.
    ``cuda_graphs`` (default: on when the data is on CUDA) captures the steps in a graph;
    ``cores`` (default: what the process may use) sets the CPU plan.
    Raises TrainingError naming the model and epoch if a loss stops being finite.
    """
    if len(train_x) == 0:
        raise TrainingError(f"{jobs[0].name if jobs else 'training'}: no training images")
    histories: list[list[EpochResult]] = []
    adam: list[dict | None] = []
    for job in jobs:
        blob = _read_checkpoint(job)
        if blob is None:
            histories.append([])
            adam.append(None)
            continue
        job.model.load_state_dict(blob["model"])
        job.generator.set_state(blob["generator"])
        histories.append([EpochResult(**r) for r in blob["history"]])
        adam.append(blob["adam"])
        print(f"{job.name}: resuming after epoch {len(histories[-1])} from {job.checkpoint.path}", file=sys.stderr)

    def emit(k: int, result: EpochResult) -> None:
        if jobs[k].on_epoch is not None:
            jobs[k].on_epoch(result)

    for k, history in enumerate(histories):
        for result in history:  # epochs done before an interruption are reported again
            emit(k, result)
    on_cuda = train_x.device.type == "cuda"
    if stacks_per_group is None:
        from .device import usable_cores

        stacks_per_group = 1 if on_cuda else (cores or usable_cores())
    stacks = _stacks(jobs, histories, stacks_per_group)
    rates = None if schedule == "constant" else (lambda e: learning_rate(schedule, lr, e, epochs))
    if rates is not None:
        rates(0)  # an unknown schedule fails here, before any work
    trainers = [_StackTrainer([jobs[k] for k in ks], [histories[k] for k in ks], [adam[k] for k in ks],
                              train_x, batch_size, lr, rates, weight_decay) for ks in stacks]

    def emit_stack(t: int, results: list[EpochResult]) -> None:
        for k, result in zip(stacks[t], results):
            emit(k, result)

    if on_cuda:
        use_graphs = cuda_graphs if cuda_graphs is not None else True
        _fit_together(trainers, eval_x, epochs, batch_size, cuda_capture if use_graphs else None, emit_stack)
    else:
        from .device import configure_cpu, cpu_plan

        workers, threads = cpu_plan(len(trainers), cores)
        before = torch.get_num_threads()
        configure_cpu(threads)
        try:
            if workers == 1:
                _fit_together(trainers, eval_x, epochs, batch_size, None, emit_stack)
            else:
                _fit_threaded(trainers, eval_x, epochs, workers, threads, emit_stack)
        finally:
            configure_cpu(before)  # what comes next (scoring, say) gets the cores it had again
    out: list[list[EpochResult]] = [[] for _ in jobs]
    for t, ks in zip(trainers, stacks):
        t.unstack()
        for k, history in zip(ks, t.histories):
            out[k] = history[:epochs]
    return out


def fit(model: nn.Module, train_x: torch.Tensor, eval_x: torch.Tensor, *, name: str, epochs: int,
        batch_size: int, lr: float, generator: torch.Generator,
        on_epoch: Callable[[EpochResult], None] | None = None, **kwargs) -> list[EpochResult]:
    """Train one model; see fit_many."""
    return fit_many([Job(name, model, generator, on_epoch)], train_x, eval_x, epochs=epochs,
                    batch_size=batch_size, lr=lr, **kwargs)[0]


def _fit_together(trainers, eval_x, epochs, batch_size, capture, emit) -> None:
    """All stacks step by step in this thread; with ``capture``, one replay steps them all."""
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
        due = [k for k, t in enumerate(trainers) if t.epochs_done < epoch]  # resumed ones may be ahead
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
    """Stack-epochs spread over worker threads; results come back here in finishing order."""
    from .device import configure_cpu

    busy = [False] * len(trainers)
    lock = threading.Lock()
    stop = threading.Event()
    results: queue.Queue = queue.Queue()

    def next_task() -> int | None:
        with lock:
            # a stack's histories only grow while it is busy, so these counts are settled
            done = [t.epochs_done for t in trainers]  # more than 0 where checkpoints were resumed
            ready = [k for k in range(len(trainers)) if not busy[k] and done[k] < epochs]
            if not ready:
                return None
            k = min(ready, key=lambda j: (done[j], j))  # the stack furthest behind
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
                result = t.finish_epoch(t.epochs_done + 1, eval_x, start)
                with lock:
                    busy[k] = False
                results.put((k, result))
        except BaseException as exc:  # handed to the calling thread, which raises it
            stop.set()
            results.put((None, exc))

    remaining = sum(max(0, epochs - t.epochs_done) for t in trainers)
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
