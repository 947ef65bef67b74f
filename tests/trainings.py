"""What the training tests share (tests/test_train.py, test_stacking.py, test_graphs.py): the
specs of each kind of codec at test size, and jobs of small deep or conv autoencoders, each with
its own seeded generator."""

from __future__ import annotations

from mnist_codec.codecs import models, train
from mnist_codec.codecs.seeding import derive_seed, seed_everything

SPECS = {
    "ae": {"kind": "ae", "latent_dim": 8},
    "deep": {"kind": "deep", "latent_dim": 8, "hidden": [64, 16], "activation": "relu"},
    "conv": {"kind": "conv", "latent_dim": 8, "channels": [4, 8], "activation": "leaky_relu"},
}


def deep_jobs(names: list[str]) -> list[train.Job]:
    """Small deep autoencoders named ``deep_<activation>``, each seeded by its name."""
    out = []
    for name in names:
        generator = seed_everything(derive_seed(3, name))
        spec = {"kind": "deep", "latent_dim": 8, "hidden": [32, 16], "activation": name.removeprefix("deep_")}
        out.append(train.Job(name, models.build(spec), generator))
    return out


def conv_job(name: str, seed: int) -> train.Job:
    """A conv autoencoder of SPECS["conv"], its generator seeded before its weights are drawn."""
    generator = seed_everything(seed)
    return train.Job(name, models.build(SPECS["conv"]), generator)
