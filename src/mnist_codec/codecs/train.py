"""Training loop for the autoencoders: the notebook's maths without its overhead.

What each model computes is the notebook's: Adam, per-pixel MSE, batches of ``batch_size``
drawn from a fresh permutation every epoch, the last partial batch included. Beyond the
notebook, params may set a learning-rate schedule (torch's ``LambdaLR``, stepped once an
epoch, see :mod:`mnist_codec.codecs.schedules`) and decoupled weight decay (AdamW); with the defaults (constant rate,
no decay) the optimizer is the notebook's Adam, number for number. The speed comes from how
it is run:

* models of one layout (every seed of every activation) train in stacks: one batched
  matrix product per layer for all members of a stack, or, for the convolutional AE, the
  module mapped over stacked parameters with ``torch.func.vmap`` (:mod:`mnist_codec.codecs.stacking`);
* the split lives as one tensor on the device and batches are gathered by index from it,
  with no DataLoader collating single images;
* losses are summed on the device and read back once per epoch, not once per step;
* Adam is the fused kernel (one call per step for all parameters);
* with ``precision="bf16"`` the forward pass runs under ``torch.autocast`` to bfloat16: its
  matrix products (and so their backward products) in bf16, while the weights, Adam's moments
  and the loss reduction stay fp32 (mixed precision, Lightning's ``bf16-mixed``); scoring is fp32;
* on CUDA the whole full-batch step of every stack is captured once in a CUDA graph and
  replayed (:mod:`mnist_codec.codecs.graphs`); the last partial batch runs eagerly on the
  same weights and optimizer state;
* on a CPU the models are cut into about one stack per core, each stack-epoch a task of a
  ``concurrent.futures`` thread pool of one worker per core (a lone stack gets every
  core); on CUDA they are one stack.

Each model draws its data order from its own generator and is stepped on its own batch, so
its result does not depend on which models share its stack, or on the schedule.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import torch
from torch import nn

from ..errors import TrainingError
from ..interrupts import deferred
from ..params import PRECISIONS
from .checkpoints import read_checkpoint
from .device import configure_cpu, cpu_plan, stack_sizes, usable_cores
from .graphs import GraphedSteps, cuda_capture
from .stacking import layout
from .trainer import EpochResult, Job, StackTrainer

__all__ = ["PRECISIONS", "EpochResult", "Job", "StackTrainer", "fit", "fit_many"]

log = logging.getLogger(__name__)


def _stacks(jobs: Sequence[Job], histories: Sequence[list], parts: int) -> list[list[int]]:
    """Job indices per stack: one layout and one number of epochs done (resumed jobs may be
    ahead) per stack, in job order. A group of n such jobs is cut into stacks of
    ``max(1, n // parts)``, so ``parts`` workers share them evenly epoch by epoch (9 models
    on 2 cores: stacks of 4, 4 and 1; 3 models: three stacks of one)."""
    groups: dict[tuple, list[int]] = {}
    for k, job in enumerate(jobs):
        groups.setdefault((layout(job.model), len(histories[k])), []).append(k)
    stacks = []
    for members in groups.values():
        start = 0
        for size in stack_sizes(len(members), parts):
            stacks.append(members[start : start + size])
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
    precision: str = "fp32",
    cuda_graphs: bool | None = None,
    cores: int | None = None,
    stacks_per_group: int | None = None,
) -> list[list[EpochResult]]:
    """Train every job's model to reconstruct ``train_x`` (N, 784); return each one's history.

    ``schedule`` names the learning-rate schedule over ``epochs`` (:func:`~mnist_codec.codecs.schedules.learning_rate`);
    ``weight_decay`` > 0 makes the optimizer AdamW; ``precision`` is ``fp32`` or ``bf16``
    (autocast products; whether the hardware has native bf16 is the caller's check,
    :func:`mnist_codec.codecs.device.check_precision`).

    Models of one layout train in stacks (see :mod:`mnist_codec.codecs.stacking`): on CUDA one
    stack, all in one graph; on a CPU about one stack per core (``stacks_per_group``
    overrides), since on the CPUs measured a batched product on one core does as much per
    second as on two. Where a model trains does not change its losses (to 1e-6).
    ``on_epoch`` callbacks run in the calling thread, in the order epochs finish.
    ``cuda_graphs`` (default: on when the data is on CUDA) captures the steps in a graph;
    ``cores`` (default: what the process may use) sets the CPU plan.
    Raises TrainingError naming the model and epoch if a loss stops being finite.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if len(train_x) == 0:
        raise TrainingError(f"{jobs[0].name if jobs else 'training'}: no training images")
    histories: list[list[EpochResult]] = []
    adam: list[dict | None] = []
    for job in jobs:
        blob = read_checkpoint(job.name, job.checkpoint)
        if blob is None or job.checkpoint is None:
            histories.append([])
            adam.append(None)
            continue
        job.model.load_state_dict(blob["model"])
        job.generator.set_state(blob["generator"])
        histories.append([EpochResult(**r) for r in blob["history"]])
        adam.append(blob["adam"])
        log.warning("%s: resuming after epoch %d from %s", job.name, len(histories[-1]), job.checkpoint.path)

    def emit(k: int, result: EpochResult) -> None:
        on_epoch = jobs[k].on_epoch
        if on_epoch is not None:
            on_epoch(result)

    for k, history in enumerate(histories):
        for result in history:  # epochs done before an interruption are reported again
            emit(k, result)
    on_cuda = train_x.device.type == "cuda"
    if stacks_per_group is None:
        stacks_per_group = 1 if on_cuda else (cores or usable_cores())
    stacks = _stacks(jobs, histories, stacks_per_group)
    trainers = [
        StackTrainer(
            [jobs[k] for k in ks],
            [histories[k] for k in ks],
            [adam[k] for k in ks],
            train_x,
            batch_size,
            lr,
            schedule,
            epochs,
            weight_decay,
            precision,
        )
        for ks in stacks
    ]

    def emit_stack(t: int, results: list[EpochResult]) -> None:
        for k, result in zip(stacks[t], results, strict=True):
            emit(k, result)

    if on_cuda:
        use_graphs = cuda_graphs if cuda_graphs is not None else True
        _fit_together(trainers, eval_x, epochs, batch_size, cuda_capture if use_graphs else None, emit_stack)
    else:
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
    for t, ks in zip(trainers, stacks, strict=True):
        t.unstack()
        for k, history in zip(ks, t.histories, strict=True):
            out[k] = history[:epochs]
    return out


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
    **kwargs: Any,
) -> list[EpochResult]:
    """Train one model; see fit_many."""
    return fit_many(
        [Job(name, model, generator, on_epoch)], train_x, eval_x, epochs=epochs, batch_size=batch_size, lr=lr, **kwargs
    )[0]


def _fit_together(
    trainers: list[StackTrainer],
    eval_x: torch.Tensor,
    epochs: int,
    batch_size: int,
    capture: Callable | None,
    emit: Callable[[int, list[EpochResult]], None],
) -> None:
    """All stacks step by step in this thread; with ``capture``, one replay steps them all."""
    graphed = None
    if capture is not None and len(trainers[0].x) >= batch_size:
        try:
            graphed = GraphedSteps(trainers, batch_size, capture)
        except RuntimeError as exc:  # e.g. an op this torch build cannot capture: same maths, eagerly
            log.warning("training: CUDA graph capture failed (%s); stepping eagerly", exc)
            for t in trainers:
                t.zero_grad()
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


INTERRUPT_POLL_S = 0.2  # how long a Ctrl-C may wait while the stacks train in threads


def _fit_threaded(
    trainers: list[StackTrainer],
    eval_x: torch.Tensor,
    epochs: int,
    workers: int,
    threads: int,
    emit: Callable[[int, list[EpochResult]], None],
) -> None:
    """Stack-epochs as tasks of a thread pool of ``workers``; results come back here in
    finishing order. A stack's next epoch is submitted when its last one is done, the
    stacks furthest behind first (resumed stacks may be ahead)."""
    stop = threading.Event()

    def epoch(k: int) -> tuple[int, list[EpochResult]]:
        t, start = trainers[k], time.perf_counter()
        t.new_epoch()
        t.eager_epoch(stop.is_set)
        if stop.is_set():
            return k, []
        return k, t.finish_epoch(t.epochs_done + 1, eval_x, start)

    # configure_cpu in each worker: flush-to-zero is a per-thread FPU setting
    with ThreadPoolExecutor(
        workers, thread_name_prefix="stack", initializer=configure_cpu, initargs=(threads,)
    ) as pool:
        order = sorted(
            (k for k, t in enumerate(trainers) if t.epochs_done < epochs), key=lambda k: (trainers[k].epochs_done, k)
        )
        running: set[Future] = {pool.submit(epoch, k) for k in order}
        try:
            while running:
                # Ctrl-C and SIGTERM are held off inside this block and raised at its end, at
                # most INTERRUPT_POLL_S after they came: raised anywhere in wait(), between two
                # of the futures' locks it takes, the exception left one held, the workers
                # blocked on it for ever and the stage hung instead of stopping
                with deferred():
                    done, running = wait(running, timeout=INTERRUPT_POLL_S, return_when=FIRST_COMPLETED)
                    for future in done:
                        k, results = future.result()  # a worker's exception is raised here
                        emit(k, results)
                        if trainers[k].epochs_done < epochs:
                            running.add(pool.submit(epoch, k))
        finally:
            stop.set()  # on an error (or Ctrl-C) the other workers stop at their next step
