"""What the two training stages share: load a split onto the device, train a stage's codecs on
every seed side by side, write each model, its record and its curve.

Each codec is a parent MLflow run with one child run per seed, open while it trains; files
are written last, inside the runs, so a failure leaves no model and FAILED (or KILLED) runs.
A seed's run holds its metrics, per-epoch losses and model; the codec's run holds its figures,
every seed in each (the loss curves of all seeds in one plot, one row of reconstructions per
seed), so the seeds compare at a glance and three seeds cost one pair of figures, not three.
Every epoch ends with a checkpoint per model (outside the stage's DVC outputs), from which an
interrupted stage resumes when run again with the same params and data.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import fileio, timing
from ..codecs import device as devices
from ..codecs import models, train
from ..codecs.checkpoints import Checkpoint
from ..codecs.seeding import replicate_seeds, seed_everything
from ..data import splits
from ..params import Params

if TYPE_CHECKING:
    from ..codecs.trainer import EpochResult, Job
    from ..tracking.runs import Run


CHECKPOINT_DIR = ".checkpoints"  # beside the models; not a DVC output, removed when a stage completes
# The per-epoch eval_loss of the training curves is measured on at most this many evaluation
# images, evenly spaced (see curve_rows); a model's final eval MSE always on the whole split.
CURVE_IMAGES = 2_000
TRAIN_KEYS = ["seed", "n_seeds", "device", "latent_dim", "train", "data"]  # what a training run logs


def curve_rows(n: int) -> slice:
    """The evaluation rows the training curves are measured on: all ``n`` when they are at
    most CURVE_IMAGES, else every k-th row, k the smallest stride that keeps at most
    CURVE_IMAGES (the holdout protocol's 10,000 test images: every 5th, 2,000 images; the
    notebook protocol's 70,000: every 35th). The curve estimates what the training loss
    already tracks, on the same images every epoch, so it is smooth (its standard error on
    2,000 digits is about 1% of the MSE); measuring it on all 10,000 after every epoch cost
    more than scoring every model once on them at the end."""
    return slice(None, None, max(1, -(-n // CURVE_IMAGES)))


@dataclass(frozen=True)
class TrainingData:
    """A split loaded once per stage: tensors on the device, eval arrays for figures."""

    device: Any
    x: Any  # (N, 784) float32 tensor on device
    eval_x: Any  # (M, 784) float32 tensor on device
    eval_images: np.ndarray  # (M, 784) float32
    eval_labels: np.ndarray  # (M,) uint8
    sha256: str  # of the training split
    eval_sha256: str
    datasets: list  # [tracking.runs.DatasetRef] of both splits


def load_training_data(data_dir: Path, device_name: str, precision: str = "fp32") -> TrainingData:
    """The split on the device; refuses a precision the device has no native support for."""
    import torch

    device = devices.resolve_device(device_name)
    devices.check_precision(device, precision)
    (x, _), (ex, ey) = splits.load_splits(data_dir)
    meta = splits.read_meta(data_dir)
    tx = torch.from_numpy(x).to(device)
    from ..tracking.runs import split_datasets

    return TrainingData(
        device,
        tx,
        tx if ex is x else torch.from_numpy(ex).to(device),
        ex,
        ey,
        meta["splits"]["train"]["sha256"],
        meta["splits"]["eval"]["sha256"],
        split_datasets(data_dir, meta),
    )


def curve_csv(history: list[EpochResult]) -> str:
    lines = ["epoch,train_loss,eval_loss"]
    lines += [f"{r.epoch},{r.train_loss:.8f},{r.eval_loss:.8f}" for r in history]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CodecTarget:
    """One autoencoder a training stage builds, on every seed, and where its outputs go.

    ``model_dir`` gets ``seed<r>.pt`` and ``seed<r>.json`` per replicate r and an
    ``index.json``; ``curve_dir`` gets ``seed<r>.csv``.
    """

    name: str
    spec: dict
    log_params: dict
    model_dir: Path
    curve_dir: Path


@dataclass(frozen=True)
class _Member:
    """One (codec, seed) training: replicate number, its seed, its MLflow run's and its
    codec's parent run's indices."""

    target: CodecTarget
    replicate: int
    seed: int
    run: int
    parent: int


def made_of(params: Params, seed: int, data_sha256: str) -> dict:
    """What a model's weights depend on besides its spec and code: every training param (the
    precision included), its seed and its training data. Both fingerprints hash it."""
    return {"train": params.to_dict()["train"], "seed": seed, "data": data_sha256}


def fingerprint(params: Params, target: CodecTarget, seed: int, data_sha256: str) -> str:
    """What a checkpoint must match to be resumed: the model, its training params, its data."""
    text = json.dumps({"spec": target.spec, **made_of(params, seed, data_sha256)}, sort_keys=True)
    return fileio.sha256_bytes(text.encode())


def checkpoint_path(checkpoint_dir: Path, name: str, replicate: int) -> Path:
    return checkpoint_dir / f"{name}.seed{replicate}.ckpt"


def remove_checkpoints(checkpoint_dir: Path, targets: list[CodecTarget], n_seeds: int) -> None:
    """Once a stage's outputs are in place its checkpoints are spent."""
    for target in targets:
        for r in range(n_seeds):
            checkpoint_path(checkpoint_dir, target.name, r).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # other stages' checkpoints are still there, or it never existed
        checkpoint_dir.rmdir()


def train_codecs(
    params: Params, targets: list[CodecTarget], stage: str, td: TrainingData, checkpoint_dir: Path
) -> None:
    """Seed, build, train side by side, log and save the stage's autoencoders, every seed."""
    from ..progress import epoch_progress
    from ..serving.packaging import log_model
    from ..tracking import runs as tracking
    from ..tracking.figures import log_figures
    from ..tracking.fingerprint import version_tags

    device, ex, ey, t = td.device, td.eval_images, td.eval_labels, params.train
    device_name = devices.describe(device, len(targets) * params.n_seeds, t.precision)
    jobs: list[Job] = []
    specs: list[tracking.RunSpec] = []
    members: list[_Member] = []
    parents: dict[str, int] = {}  # codec name -> index of its run
    for target in targets:
        tags = {
            "mnist_codec.codec": target.name,
            "mnist_codec.device": device_name,
            "mnist_codec.data_sha256": td.sha256,
            "mnist_codec.n_seeds": str(params.n_seeds),
        }
        parent = parents[target.name] = len(specs)
        specs.append(tracking.RunSpec(target.name, target.log_params, tags))
        for r, seed in enumerate(replicate_seeds(params.seed, target.name, params.n_seeds)):
            generator = seed_everything(seed)  # weights drawn now, data order from the generator
            checkpoint = Checkpoint(
                checkpoint_path(checkpoint_dir, target.name, r), fingerprint(params, target, seed, td.sha256)
            )
            jobs.append(
                train.Job(
                    f"{target.name}/seed{r}", models.build(target.spec).to(device), generator, checkpoint=checkpoint
                )
            )
            specs.append(
                tracking.RunSpec(
                    f"{target.name} seed{r}",
                    {**target.log_params, "model_seed": seed, "replicate": r},
                    {**tags, "mnist_codec.seed": str(seed), "mnist_codec.replicate": str(r)},
                    parent=parent,
                )
            )
            members.append(_Member(target, r, seed, len(specs) - 1, parent))
    with (
        tracking.start_runs(specs, stage, params.to_dict()) as runs,
        epoch_progress([j.name for j in jobs], t.epochs) as progress,
    ):
        for run in runs:
            run.log_inputs(td.datasets)
        for job, member in zip(jobs, members, strict=True):

            def on_epoch(r: EpochResult, job: Job = job, run: Run = runs[member.run]) -> None:
                run.log_epoch(r.epoch, r.train_loss, r.eval_loss)
                progress(job.name, r)

            job.on_epoch = on_epoch
        start = time.perf_counter()
        curve_x = td.eval_x[curve_rows(len(td.eval_x))].contiguous()
        whole = len(curve_x) == len(td.eval_x)
        with timing.work("training"):
            histories = train.fit_many(
                jobs,
                td.x,
                curve_x,
                epochs=t.epochs,
                batch_size=t.batch_size,
                lr=t.lr,
                schedule=t.schedule,
                weight_decay=t.weight_decay,
                precision=t.precision,
            )
        seconds = time.perf_counter() - start  # models trained side by side share this wall time
        with timing.work("scoring"):  # the last curve point is the final MSE where it used the whole split
            eval_mse = [
                h[-1].eval_loss if whole else models.reconstruction_mse(j.model, td.eval_x)
                for j, h in zip(jobs, histories, strict=True)
            ]
        trained: dict[str, dict[str, tuple]] = {name: {} for name in parents}  # codec -> seed -> (model, curves)
        for member, job, history, final_eval in zip(members, jobs, histories, eval_mse, strict=True):
            target, run, model, final = member.target, runs[member.run], job.model.cpu(), history[-1]
            run.log_metrics({"final_train_loss": final.train_loss, "eval_mse": final_eval, "train_seconds": seconds})
            curves = {
                "epoch": [r.epoch for r in history],
                "train_loss": [r.train_loss for r in history],
                "eval_loss": [r.eval_loss for r in history],
            }
            trained[target.name][f"seed{member.replicate}"] = (model, curves)
            reg = log_model(
                run,
                model,
                target.spec,
                ex[: tracking.EXAMPLE_ROWS],
                version_tags(run, target.spec, final_eval, td.eval_sha256, made_of(params, member.seed, td.sha256)),
            )
            record = {
                "codec": target.name,
                "spec": target.spec,
                "mlflow_run_id": run.run_id,
                "mlflow_parent_run_id": runs[member.parent].run_id,
                "registered_model": reg.name,
                "model_version": reg.version,
                "replicate": member.replicate,
                "seed": member.seed,
                "device": device_name,
                "epochs": t.epochs,
                "train_seconds": round(seconds, 3),
                "trained_with": [j.name for j in jobs],
                "final_train_loss": final.train_loss,
                "final_eval_loss": final_eval,
                "curve_eval_images": len(curve_x),
                "made_of": made_of(params, member.seed, td.sha256),
            }
            models.save(model, target.spec, target.model_dir / f"seed{member.replicate}.pt")
            fileio.write_json(target.model_dir / f"seed{member.replicate}.json", record)
            fileio.write_text(target.curve_dir / f"seed{member.replicate}.csv", curve_csv(history))
        for target in targets:
            # the codec's headline metrics (mse, mse_ci95, psnr) come from the evaluate stage
            parent_run = runs[parents[target.name]]
            parent_run.log_metrics({"train_seconds": seconds})
            seeds = trained[target.name]  # the codec's figures, every seed in each, on its parent run
            log_figures(
                parent_run,
                target.name,
                {k: m for k, (m, _) in seeds.items()},
                {k: c for k, (_, c) in seeds.items()},
                ex,
                ey,
            )
            fileio.write_json(
                target.model_dir / "index.json",
                {
                    "codec": target.name,
                    "n_seeds": params.n_seeds,
                    "mlflow_run_id": parent_run.run_id,
                    "seeds": [m.seed for m in members if m.target is target],
                },
            )
