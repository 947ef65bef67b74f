"""One trial of the search: the pipeline's deep codec trained in-process with the project's
trainer, on the validation split only, scored after every epoch.

A trial is the deep stage's codec for one setting of the searched keys (one activation, one
seed: the pipeline's seed derived for that codec, as a one-seed ``dvc exp run`` would draw it).
It trains on the first 50,000 training images and is scored on the last 10,000 after each
epoch; ``report`` gets that score (ASHA decides from it whether the trial goes on). The test
images are not loaded. The trial is an MLflow run, a child of the tuning run, holding its params,
its per-epoch curve and where it ran; it ends FINISHED after its last epoch or FAILED on an
error. A trial ASHA stops is ended KILLED by the search, which knows why it stopped.

Nothing here imports Ray: the search passes ``report`` (Ray Tune's) and the node's name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..data import SIDE
from ..params import Params
from .proposals import decode
from .space import Spec, params_for

if TYPE_CHECKING:
    import torch


VAL_METRIC = "val_mse"  # what ASHA and Optuna minimise: per-pixel MSE on the validation split


@dataclass(frozen=True)
class Context:
    """What every trial of one search shares (sent to each trial by the search)."""

    spec: Spec
    base: dict  # params.yaml as read
    tracking_uri: str
    experiment_id: str
    parent_run_id: str  # the tuning run
    node: str = ""  # where the search runs it, filled per trial
    host: str = ""
    node_ip: str = ""


def validation_data(params: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """(train x, validation x) as float32 tensors: the validation protocol's splits of the
    bundled MNIST training images (limits applied), the test images left unread."""
    import numpy as np
    import torch

    from ..data import idx, mnist, splits

    train = idx.load_pair(mnist.bundled_dir(), "train")
    empty = (np.zeros((0, SIDE, SIDE), np.uint8), np.zeros(0, np.uint8))
    parts = splits.make_splits(train, empty, "validation", params.data.train_limit, params.data.eval_limit)
    return (torch.from_numpy(splits.scale(parts["train"][0])), torch.from_numpy(splits.scale(parts["eval"][0])))


def codec_of(params: Params) -> tuple[str, dict]:
    """The trial's codec: the deep stage's for its one activation."""
    from ..pipeline.train_deep import deep_spec

    return deep_spec(params, params.activation[0])


def run(config: dict, ctx: Context, report: Callable[[dict], None], trial_id: str) -> float:
    """Train the codec ``config`` sets (searched keys, Optuna's encoding) and return its last
    validation MSE; ``report`` gets ``{val_mse, train_loss, epoch, mlflow_run_id}`` after each epoch."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from ..codecs import device as devices
    from ..codecs import models, train
    from ..codecs.seeding import replicate_seeds, seed_everything
    from ..tracking.runs import flatten

    searched = decode(config)
    params = params_for(ctx.base, ctx.spec, searched)
    name, spec = codec_of(params)
    device = devices.resolve_device(params.device)
    devices.check_precision(device, params.train.precision)
    seed = replicate_seeds(params.seed, name, 1)[0]
    client = MlflowClient(ctx.tracking_uri)
    tags = {
        "mlflow.parentRunId": ctx.parent_run_id,
        "mnist_codec.stage": "tune",
        "mnist_codec.tune_study": ctx.spec.study,
        "mnist_codec.tune_trial": trial_id,
        "mnist_codec.codec": name,
        "mnist_codec.seed": str(seed),
        "mnist_codec.device": devices.describe(device, 1, params.train.precision),
        "mnist_codec.ray_node": ctx.node,
        "mnist_codec.ray_host": ctx.host,
        "mnist_codec.ray_node_ip": ctx.node_ip,
    }
    run_id = client.create_run(ctx.experiment_id, run_name=f"trial {trial_id} {name}", tags=tags).info.run_id
    last: dict = {}
    try:
        logged = {
            **{f"searched.{k}": v for k, v in searched.items()},
            **flatten({k: v for k, v in params.to_dict().items() if k != "evaluate"}),
        }
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(logged.items())])
        x, vx = (t.to(device) for t in validation_data(params))
        generator = seed_everything(seed)
        model = models.build(spec).to(device)
        t = params.train
        last = {"val_mse": float("nan")}

        def on_epoch(r: train.EpochResult) -> None:
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[
                    Metric("val_mse", r.eval_loss, now, r.epoch),
                    Metric("train_loss", r.train_loss, now, r.epoch),
                ],
            )
            last["val_mse"] = r.eval_loss
            if r.epoch == t.epochs:  # ended before the last report: Ray may stop the trial inside it
                client.set_tag(run_id, "mnist_codec.epochs_run", str(t.epochs))
                client.set_terminated(run_id, "FINISHED")
                last["done"] = True
            report({VAL_METRIC: r.eval_loss, "train_loss": r.train_loss, "epoch": r.epoch, "mlflow_run_id": run_id})

        train.fit(
            model,
            x,
            vx,
            name=f"trial {trial_id}",
            epochs=t.epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            generator=generator,
            on_epoch=on_epoch,
            schedule=t.schedule,
            weight_decay=t.weight_decay,
            precision=t.precision,
        )
        return last["val_mse"]
    except SystemExit:  # Ray Tune ends a stopped trial's thread with sys.exit(0): the search ends its run
        raise
    except BaseException:
        if not last.get("done"):
            client.set_terminated(run_id, "FAILED")
        raise
