"""Checkpoints: a model's end-of-epoch state, resumed only by the training it was written for."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """Where a model's end-of-epoch state is kept, and what it must match to be resumed.

    ``fingerprint`` names everything the training depends on (spec, params, seed, data);
    a checkpoint written under another fingerprint is ignored, never resumed.
    """

    path: Path
    fingerprint: str


CHECKPOINT_FORMAT = 3  # a member's weights, its slices of Adam's moments (in the stack's layout), data order, history


def read_checkpoint(name: str, ck: Checkpoint | None) -> dict | None:
    """Model ``name``'s checkpoint if one exists, is readable and was written for it; else None."""
    if ck is None or not ck.path.exists():
        return None
    try:
        blob = torch.load(ck.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable (cut short, say): start over rather than trust it
        log.warning("%s: ignoring unreadable checkpoint %s (%s)", name, ck.path, type(exc).__name__)
        return None
    if (
        not isinstance(blob, dict)
        or blob.get("fingerprint") != ck.fingerprint
        or blob.get("format") != CHECKPOINT_FORMAT
    ):  # written for other params, data or code
        return None
    return blob
