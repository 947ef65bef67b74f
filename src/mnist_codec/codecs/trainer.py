"""One stack of models in training: their stacked weights, one optimizer, each member's data
order, its loss sums and its history -- the state that the eager step and the graphed step
(:mod:`mnist_codec.codecs.graphs`) both advance, and that checkpoints save and resume.

``StackTrainer.step`` is one Adam step of every member, each on its own batch; ``snapshot``
and ``restore`` put the weights and the optimizer's moments back as they were (the graph's
warm-up and capture run real steps that must leave no trace).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import TrainingError
from .checkpoints import CHECKPOINT_FORMAT, Checkpoint
from .schedules import make_optimizer, make_scheduler
from .stacking import make_stack

Snapshot = tuple[dict[str, torch.Tensor], dict[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float  # mean per-pixel MSE over the epoch's batches, weighted by batch size
    eval_loss: float  # per-pixel MSE of the model after the epoch, on the evaluation split
    seconds: float


@dataclass
class Job:
    """One model to train: its name (for errors and logs), module and data-order generator."""

    name: str
    model: nn.Module
    generator: torch.Generator
    on_epoch: Callable[[EpochResult], None] | None = None
    checkpoint: Checkpoint | None = None


class StackTrainer:
    """Models of one layout trained as one stack: one optimizer, data orders (S, N), loss sums (S,).

    Every member draws its data order from its own generator and is stepped on its own
    batch, so its numbers do not depend on the other members.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        histories: Sequence[list[EpochResult]],
        adam: Sequence[dict | None],
        x: torch.Tensor,
        batch_size: int,
        lr: float,
        schedule: str = "constant",
        epochs: int = 1,
        weight_decay: float = 0.0,
        precision: str = "fp32",
    ):
        self.jobs, self.x, self.batch_size = list(jobs), x, batch_size
        self.device = x.device
        self.precision = precision
        self.stack = make_stack([j.model for j in jobs]).to(self.device)
        scheduled = schedule != "constant"  # the notebook's constant rate stays a plain float
        self.optimizer = make_optimizer(self.stack.parameters(), lr, self.device, weight_decay, scheduled=scheduled)
        self.scheduler = make_scheduler(self.optimizer, schedule, lr, epochs) if scheduled else None
        self.total = torch.zeros(len(jobs), dtype=torch.float64, device=self.device)
        self.perm = torch.empty(len(jobs), 0, dtype=torch.long, device=self.device)
        self.histories = [list(h) for h in histories]
        resumed = [a for a in adam if a is not None]
        if resumed:  # every member at the same epoch, so one step count
            if len(resumed) != len(adam):
                raise ValueError("the members of a stack resume from one epoch: some have no optimizer state")
            self._load_adam(resumed)

    @property
    def epochs_done(self) -> int:
        return len(self.histories[0])

    def _load_adam(self, adam: Sequence[dict]) -> None:
        state = {
            i: {
                "step": torch.tensor(float(adam[0]["step"])),
                "exp_avg": torch.stack([a["exp_avg"][i] for a in adam]),
                "exp_avg_sq": torch.stack([a["exp_avg_sq"][i] for a in adam]),
            }
            for i in range(len(list(self.stack.parameters())))
        }
        self.optimizer.load_state_dict({"state": state, "param_groups": self.optimizer.state_dict()["param_groups"]})

    def _member_adam(self, k: int) -> dict:
        states = [self.optimizer.state[p] for p in self.stack.parameters()]
        return {
            "step": float(states[0]["step"]),
            "exp_avg": [s["exp_avg"][k].cpu() for s in states],
            "exp_avg_sq": [s["exp_avg_sq"][k].cpu() for s in states],
        }

    def save_checkpoints(self) -> None:
        for k, job in enumerate(self.jobs):
            ck = job.checkpoint
            if ck is None:
                continue
            self.stack.unstack_into(k, job.model)
            blob = {
                "format": CHECKPOINT_FORMAT,
                "fingerprint": ck.fingerprint,
                "model": {n: t.cpu() for n, t in job.model.state_dict().items()},
                "adam": self._member_adam(k),
                "generator": job.generator.get_state(),
                "history": [asdict(r) for r in self.histories[k]],
            }
            with atomic_path(ck.path) as tmp:
                torch.save(blob, tmp)

    def new_epoch(self) -> None:
        # drawn on the CPU from each member's generator: the same order on every device
        self.perm = torch.stack([torch.randperm(len(self.x), generator=j.generator) for j in self.jobs]).to(self.device)
        self.total.zero_()
        self.stack.train()
        if self.scheduler is not None:  # to this epoch's rate (a resumed stack starts ahead)
            with warnings.catch_warnings():  # stepped before any optimizer step when resumed: intended
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                while self.scheduler.last_epoch < self.epochs_done:
                    self.scheduler.step()

    def step(self, idx: torch.Tensor) -> None:
        """One Adam step of every member, member k on the images ``x[idx[k]]``; idx is (S, b)."""
        s, b = idx.shape
        xb = torch.index_select(self.x, 0, idx.reshape(-1)).view(s, b, -1)  # (S, b, 784)
        with self.products():
            out = self.stack(xb)
        diff = out.float() - xb  # the loss in fp32 whatever the products' format (a no-op in fp32)
        per_member = torch.mean(diff * diff, dim=(1, 2))  # (S,): each member's batch MSE
        self.zero_grad()
        per_member.sum().backward()  # the sum's gradient for a member is its own loss's gradient
        self.optimizer.step()
        self.total.add_(per_member.detach(), alpha=b)

    def products(self) -> contextlib.AbstractContextManager:
        """The context the forward pass runs in: autocast to bf16 (its cache off, as CUDA graph
        capture requires; each weight is cast once per step anyway), or nothing in fp32."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def eager_epoch(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        b = self.batch_size
        for i in range(0, len(self.x), b):
            if should_stop():
                return
            self.step(self.perm[:, i : i + b])

    def finish_epoch(self, epoch: int, eval_x: torch.Tensor, start: float) -> list[EpochResult]:
        train_losses = (self.total / len(self.x)).tolist()  # the epoch's one host sync
        for job, loss in zip(self.jobs, train_losses, strict=True):
            if not math.isfinite(loss):
                raise TrainingError(f"{job.name}: training loss became {loss} in epoch {epoch}; lower train.lr")
        eval_losses = self.stack.reconstruction_mse(eval_x).tolist()
        seconds = time.perf_counter() - start
        results = [EpochResult(epoch, t, e, seconds) for t, e in zip(train_losses, eval_losses, strict=True)]
        for history, result in zip(self.histories, results, strict=True):
            history.append(result)
        self.save_checkpoints()
        return results

    def snapshot(self) -> Snapshot:
        """Copies of the weights and of the optimizer's tensors (non-empty when resumed)."""
        weights = {k: v.clone() for k, v in self.stack.state_dict().items()}
        adam = {
            p: {k: v.clone() for k, v in st.items() if torch.is_tensor(v)} for p, st in self.optimizer.state.items()
        }
        return weights, adam

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def restore(self, saved: Snapshot) -> None:
        """Back to ``saved``, in the same tensors (a captured graph keeps using them): the
        weights, the resumed moments (or zero moments and step 0), and no loss summed."""
        weights, adam = saved
        self.stack.load_state_dict(weights)  # copies into the tensors the stack already has
        for p, st in self.optimizer.state.items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    v.copy_(adam[p][k]) if p in adam else v.zero_()
        self.total.zero_()

    def unstack(self) -> None:
        """Copy the trained weights back into the jobs' own modules."""
        for k, job in enumerate(self.jobs):
            self.stack.unstack_into(k, job.model)
            job.model.eval()
