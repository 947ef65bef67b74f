"""Shared fixtures: tiny synthetic MNIST-shaped data, built in memory."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Serialise a uint8 array as an IDX file with the given magic number."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images of blurry bars whose position depends on the label, and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = np.zeros((n, 28, 28), dtype=np.float32)
    for i, d in enumerate(labels):
        images[i, 4 + 2 * d: 8 + 2 * d, 6:22] = 1.0
        images[i, 6:22, 4 + 2 * ((d + 3) % 10): 7 + 2 * ((d + 3) % 10)] = 0.7
    images += rng.normal(0, 0.05, images.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels


def write_raw_dir(folder: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """A data/raw-like folder of the four gzipped IDX files, with synthetic content."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_digits(n, seed)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, 2051)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, 2049)))
    return folder


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return write_raw_dir(tmp_path / "raw")


@pytest.fixture
def digits() -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (400, 784) in [0, 1], y uint8 (400,))."""
    images, labels = synthetic_digits(400, seed=3)
    return images.reshape(400, 784).astype(np.float32) / 255.0, labels


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return uri
