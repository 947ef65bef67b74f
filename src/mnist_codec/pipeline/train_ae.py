"""Stage train_ae: the one-layer autoencoder 784 -> latent_dim -> 784, on every seed."""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_dir
from ..params import Params
from .training import CHECKPOINT_DIR, TRAIN_KEYS, CodecTarget, load_training_data, remove_checkpoints, train_codecs


def run(params: Params, data_dir: Path, out_dir: Path, curves_dir: Path) -> None:
    """Train the one-layer AE on every seed, side by side."""
    from ..tracking.runs import params_subset

    td = load_training_data(data_dir, params.device, params.train.precision)
    checkpoints = out_dir.parent / CHECKPOINT_DIR
    with atomic_dir(out_dir) as tmp_models, atomic_dir(curves_dir) as tmp_curves:
        target = CodecTarget(
            "ae",
            {"kind": "ae", "latent_dim": params.latent_dim},
            params_subset(params.to_dict(), TRAIN_KEYS),
            tmp_models,
            tmp_curves,
        )
        train_codecs(params, [target], "train_ae", td, checkpoints)
    remove_checkpoints(checkpoints, [target], params.n_seeds)
