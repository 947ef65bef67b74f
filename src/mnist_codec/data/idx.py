"""The IDX format of the MNIST files: every header field checked against the file's length
before a pixel is read."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import N_PIXELS, SIDE

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def parse_idx(raw: bytes, magic: int, ndim: int, name: str) -> np.ndarray:
    """Parse an unsigned-byte IDX file, checking magic, dimensions and length.

    Raises DataError naming ``name`` and what was wrong; never reads past the buffer.
    """
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: file is {len(raw)} bytes, too short for an IDX header of {header} bytes")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise DataError(f"{name}: wrong magic number {found_magic}, expected {magic}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_len = header + math.prod(dims)
    if len(raw) != expected_len:
        raise DataError(
            f"{name}: header says dimensions {dims} ({expected_len} bytes) but the file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def parse_images(raw: bytes, name: str) -> np.ndarray:
    images = parse_idx(raw, IMAGES_MAGIC, 3, name)
    if images.shape[1:] != (SIDE, SIDE):
        raise DataError(f"{name}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    return images


def parse_labels(raw: bytes, name: str) -> np.ndarray:
    labels = parse_idx(raw, LABELS_MAGIC, 1, name)
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{name}: label {int(labels[bad])} at index {bad} is outside 0-9")
    return labels


def read_raw(raw_dir: str | Path, stem: str) -> bytes:
    path = Path(raw_dir) / f"{stem}.gz"
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; run the fetch stage first") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None


def load_pair(raw_dir: str | Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 784) uint8 and labels (N,) uint8 of ``prefix`` ('train' or 't10k')."""
    img_name, lbl_name = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    images = parse_images(read_raw(raw_dir, img_name), str(Path(raw_dir) / (img_name + ".gz")))
    labels = parse_labels(read_raw(raw_dir, lbl_name), str(Path(raw_dir) / (lbl_name + ".gz")))
    if len(images) != len(labels):
        raise DataError(f"{raw_dir}: {img_name} has {len(images)} images but {lbl_name} has {len(labels)} labels")
    return images.reshape(len(images), N_PIXELS), labels
