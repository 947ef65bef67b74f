"""The one place that seeds random number generators."""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def derive_seed(seed: int, name: str) -> int:
    """A model's own seed from the run seed and its name.

    Seeding each model from (seed, name) makes its result independent of which other
    models are trained in the same process, and in which order.
    """
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**63 - 1)


def replicate_seeds(seed: int, name: str, n: int) -> list[int]:
    """The seeds of a model's ``n`` replicates: the first is ``derive_seed(seed, name)`` (what a
    one-seed run uses), the others are derived from (seed, name, replicate number)."""
    return [derive_seed(seed, name if r == 0 else f"{name}#{r}") for r in range(n)]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch.Generator seeded alike.

    The generator is for data order (shuffling), kept apart from the global stream that
    weight initialisation draws from.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
