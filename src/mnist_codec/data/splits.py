"""The splits every stage after preprocess reads: which images, how they are stored and loaded.

Layout of a processed folder: ``train_x.npy`` (N, 784) uint8 pixels as in the IDX files,
``train_y.npy`` (N,) uint8, the same for eval (not written when eval is the training set),
and ``meta.json``. Pixels are scaled to float32 in [0, 1] when loaded (:func:`load_split`):
the same numbers as scaling first, in a quarter of the bytes for DVC to hash and cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .. import fileio
from ..atomic import atomic_dir
from ..errors import DataError
from . import N_PIXELS

PROTOCOLS = ("holdout", "validation", "notebook")
VALIDATION_SHARE = 6  # the validation protocol holds out the last 1/6 of the training images: 10,000 of 60,000


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.astype(np.float32) / np.float32(255.0)


class _Hasher:
    """A write-only file that hashes what is written to it."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return len(data)


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of the .npy file ``numpy.save`` would write for ``array``, computed without writing it."""
    out = _Hasher()
    np.lib.format.write_array(out, array, allow_pickle=False)
    return out.sha.hexdigest()


def make_splits(
    train: tuple, test: tuple, protocol: str, train_limit: int | None, eval_limit: int | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Arrays for the chosen protocol: {'train': (x, y), 'eval': (x, y)} (eval may be train).

    holdout: fit on the 60,000 training images, evaluate on the 10,000 test images.
    validation: fit on the first 50,000 training images, evaluate on the last 10,000 of
    them; the test images are not used. Settings are chosen here, then measured under holdout.
    notebook: fit and evaluate on all 70,000, as the reference notebook did.
    Limits keep the first N images (small profiles for tests and smoke runs).
    """
    if protocol == "holdout":
        tx, ty = train
        ex, ey = test
        splits = {"train": (tx[:train_limit], ty[:train_limit]), "eval": (ex[:eval_limit], ey[:eval_limit])}
    elif protocol == "validation":
        tx, ty = train
        cut = len(tx) - len(tx) // VALIDATION_SHARE
        splits = {
            "train": (tx[:cut][:train_limit], ty[:cut][:train_limit]),
            "eval": (tx[cut:][:eval_limit], ty[cut:][:eval_limit]),
        }
    elif protocol == "notebook":
        x = np.concatenate([train[0], test[0]])[:train_limit]
        y = np.concatenate([train[1], test[1]])[:train_limit]
        pair = (x, y)
        splits = {"train": pair, "eval": pair}  # the same object: written once
    else:
        raise DataError(f"unknown protocol {protocol!r}")
    return splits


def write_splits(splits: dict, protocol: str, out_dir: str | Path) -> dict:
    """Write ``splits`` (from :func:`make_splits`) to ``out_dir`` atomically; return meta.json.

    A split's ``sha256`` in meta.json identifies the data the codecs see: the digest of its
    float32 pixels as an .npy file, the same digest as when splits were stored that way, so
    that registered versions and champions from before stay comparable.
    """
    eval_is_train = splits["eval"] is splits["train"]
    recorded: dict[str, dict] = {}
    meta = {"protocol": protocol, "eval_is_train": eval_is_train, "splits": recorded}
    with atomic_dir(out_dir) as tmp:
        for split in ("train",) if eval_is_train else ("train", "eval"):
            x, y = splits[split]
            np.save(tmp / f"{split}_x.npy", np.ascontiguousarray(x, dtype=np.uint8))
            np.save(tmp / f"{split}_y.npy", y)
            recorded[split] = {"n": len(x), "sha256": array_sha256(scale(x))}
        if eval_is_train:
            recorded["eval"] = recorded["train"]
        fileio.write_json(tmp / "meta.json", meta)
    return meta


def read_meta(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "meta.json"
    try:
        return fileio.read_json(path)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run the preprocess stage first") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def load_splits(data_dir: str | Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((x, y) of 'train', (x, y) of 'eval'); read and scaled once when eval is the training set."""
    train = load_split(data_dir, "train")
    return train, (train if read_meta(data_dir)["eval_is_train"] else load_split(data_dir, "eval"))


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (N, 784) in [0, 1], y uint8 (N,)) of 'train' or 'eval'; pixels are
    stored as uint8 and scaled here."""
    data_dir = Path(data_dir)
    meta = read_meta(data_dir)
    stem = "train" if (split == "eval" and meta["eval_is_train"]) else split
    try:
        x = np.load(data_dir / f"{stem}_x.npy", allow_pickle=False)
        y = np.load(data_dir / f"{stem}_y.npy", allow_pickle=False)
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{data_dir}: cannot read split '{split}': {exc}") from None
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != N_PIXELS or len(x) != len(y):
        raise DataError(
            f"{data_dir}: split '{split}' has shape {x.shape} {x.dtype}, expected (N, 784) uint8 "
            f"(re-run the preprocess stage)"
        )
    return scale(x), y
