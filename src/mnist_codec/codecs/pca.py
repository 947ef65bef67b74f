"""PCA codec: fit with scikit-learn, store as plain arrays (.npz, no pickle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import fileio
from ..data import N_PIXELS
from ..errors import DataError
from .models import PCACodec, pca_codec_from_arrays


def fit(x: np.ndarray, n_components: int) -> dict[str, np.ndarray]:
    """Fit PCA on x (N, 784); return mean (784,), components (k, 784) and variance ratios (k,).

    ``covariance_eigh`` diagonalises the 784x784 covariance: exact, and much faster than an
    SVD of the tall N x 784 matrix. It draws no random numbers, so it needs no seed.
    """
    from sklearn.decomposition import PCA

    if n_components > min(x.shape):
        raise DataError(f"pca: {n_components} components need at least as many images, found {len(x)}")
    pca = PCA(n_components=n_components, svd_solver="covariance_eigh")
    pca.fit(x)
    return {
        "mean": pca.mean_.astype(np.float32),
        "components": pca.components_.astype(np.float32),
        "explained_variance_ratio": pca.explained_variance_ratio_.astype(np.float64),
    }


def save(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    fileio.write_npz(path, arrays)


def load(path: str | Path) -> PCACodec:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            mean, components = npz["mean"], npz["components"]
    except FileNotFoundError:
        raise DataError(f"{path}: PCA file not found; run the pca stage first") from None
    except (ValueError, KeyError, OSError) as exc:
        raise DataError(f"{path}: not a valid PCA file ({exc})") from None
    if mean.shape != (N_PIXELS,) or components.ndim != 2 or components.shape[1] != N_PIXELS:
        raise DataError(
            f"{path}: PCA arrays have shapes {mean.shape} and {components.shape}, "
            f"expected ({N_PIXELS},) and (k, {N_PIXELS})"
        )
    codec = pca_codec_from_arrays(mean, components)
    codec.eval()
    return codec
