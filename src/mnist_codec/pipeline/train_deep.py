"""Stage train_deep: one deep codec (``deep.arch``) per name in ``activation``, on every seed."""

from __future__ import annotations

from pathlib import Path

from .. import fileio
from ..atomic import atomic_dir
from ..params import Params
from .training import CHECKPOINT_DIR, TRAIN_KEYS, CodecTarget, load_training_data, remove_checkpoints, train_codecs


def deep_spec(params: Params, activation: str) -> tuple[str, dict]:
    """(codec name, spec) of the deep stage's codec with ``activation``: the MLP
    (``deep_<act>``, widths ``deep.hidden``) or the convolutional AE (``conv_<act>``,
    ``deep.channels``), as ``deep.arch`` says."""
    d = params.deep
    if d.arch == "conv":
        return f"conv_{activation}", {
            "kind": "conv",
            "latent_dim": params.latent_dim,
            "channels": list(d.channels),
            "activation": activation,
        }
    return f"deep_{activation}", {
        "kind": "deep",
        "latent_dim": params.latent_dim,
        "hidden": list(d.hidden),
        "activation": activation,
    }


def run(params: Params, data_dir: Path, out_dir: Path, curves_dir: Path) -> None:
    """Train one deep codec per requested activation on every seed, all side by side."""
    from ..tracking.runs import params_subset

    td = load_training_data(data_dir, params.device, params.train.precision)
    checkpoints = out_dir.parent / CHECKPOINT_DIR
    with atomic_dir(out_dir) as tmp_models, atomic_dir(curves_dir) as tmp_curves:
        targets = []
        for act in params.activation:
            name, spec = deep_spec(params, act)
            log_params = {**params_subset(params.to_dict(), [*TRAIN_KEYS, "deep"]), "activation": act}
            targets.append(CodecTarget(name, spec, log_params, tmp_models / name, tmp_curves / name))
        train_codecs(params, targets, "train_deep", td, checkpoints)
        fileio.write_json(tmp_models / "index.json", {"codecs": [t.name for t in targets]})
    remove_checkpoints(checkpoints, targets, params.n_seeds)
