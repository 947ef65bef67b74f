"""Metrics of one trained codec on the evaluation split, and a codec's summary over its seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..codecs.models import Codec


def reconstruct(model: Codec, x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, k) and reconstructions (N, 784) of x (N, 784) float32."""
    import torch

    model.eval()
    codes, recons = [], []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            xb = torch.from_numpy(x[i : i + chunk])
            z = model.encode(xb)
            codes.append(z.numpy())
            recons.append(model.decode(z).numpy())
    return np.concatenate(codes), np.concatenate(recons)


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a per-pixel MSE, for pixels in [0, peak]."""
    return 10.0 * math.log10(peak**2 / mse) if mse > 0 else float("inf")


def encode_and_score(model: Codec, x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, k) and per-image MSE (N,) float64 of x (N, 784), one chunk at a time.

    Only a chunk of reconstructions exists at once, and squared errors are summed in
    float64, so scoring all 70,000 images needs no full-size copy in float64.
    """
    import torch

    model.eval()
    codes, errors = [], []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            xb = torch.from_numpy(x[i : i + chunk])
            z = model.encode(xb)
            diff = model.decode(z) - xb  # (chunk, 784)
            codes.append(z.numpy())
            errors.append((torch.sum(diff * diff, dim=1, dtype=torch.float64) / diff.shape[1]).numpy())
    return np.concatenate(codes), np.concatenate(errors)


def per_digit_mse(errors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean per-image MSE for each digit present in labels, keyed '0'..'9'."""
    return {str(d): float(errors[labels == d].mean()) for d in range(10) if np.any(labels == d)}


def codec_metrics(model: Codec, x: np.ndarray, y: np.ndarray) -> tuple[dict, np.ndarray]:
    """One trained model's metrics (MSE, PSNR, code size, stored numbers, per-digit MSE) and codes (N, k)."""
    from ..codecs.models import count_parameters

    codes, errors = encode_and_score(model, x)
    mse = float(errors.mean())
    metrics = {
        "mse": mse,
        "psnr": psnr(mse),
        "code_size": int(codes.shape[1]),
        "stored_numbers": int(count_parameters(model)),
        "mse_digit": per_digit_mse(errors, y),
    }
    return metrics, codes


def aggregate(per_seed: list[dict], records: Sequence[dict] = (), eval_sha256: str | None = None) -> dict:
    """A codec's entry in the detail file (metrics_detail.json) from its models' metrics and
    training records, one per seed.

    MSE, PSNR and per-digit MSE become summaries over seeds (mean, std, n, 95% interval, each
    seed's value); code size and stored numbers (parameters, or PCA's mean and components) are
    the same for every seed. ``seeds`` are the seeds the models were drawn from, in replicate
    order, and ``settings`` what else their weights and their scores depend on (the model spec,
    the training params, the training and evaluation data): where two runs share both, the
    gate compares each seed's model with its own baseline (:mod:`.gate`). ``trained_on`` is
    the device the first seed's model trained on, as its record names it.
    """
    from .stats import summarize

    first, record = per_seed[0], (records[0] if records else {})
    made_of = record.get("made_of", {})
    return {
        "mse": summarize([m["mse"] for m in per_seed]),
        "psnr": summarize([m["psnr"] for m in per_seed]),
        "code_size": first["code_size"],
        "stored_numbers": first["stored_numbers"],
        "mse_digit": {d: summarize([m["mse_digit"][d] for m in per_seed]) for d in first["mse_digit"]},
        "seeds": [r["made_of"]["seed"] for r in records if "seed" in r.get("made_of", {})],
        "trained_on": record.get("device"),
        "settings": {
            "spec": record.get("spec"),
            "train": made_of.get("train"),
            "train_data": made_of.get("data"),
            "eval_data": eval_sha256,
        },
    }


HEADLINE = ("mse", "mse_ci95", "psnr", "n_seeds")  # per codec in metrics.json


def headline(detail: dict) -> dict:
    """metrics.json, what a person compares (``dvc exp show``, ``dvc metrics diff``): per codec
    its mean MSE, the half-width of its 95% interval, its mean PSNR and its number of seeds.
    Everything else stays in the detail file."""
    from .stats import half_width

    return {
        codec: {
            "mse": m["mse"]["mean"],
            "mse_ci95": half_width(m["mse"]),
            "psnr": m["psnr"]["mean"],
            "n_seeds": m["mse"]["n"],
        }
        for codec, m in detail.items()
    }


def project_2d(codes: np.ndarray) -> np.ndarray:
    """(n, k) codes -> (n, 2) on their first two principal axes (signs fixed for stable plots)."""
    centred = codes.astype(np.float64) - codes.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    # Make the largest-magnitude entry of each axis positive: the same data gives the same picture.
    signs = np.sign(axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)])
    return (centred @ (axes * signs[:, None]).T).astype(np.float32)
