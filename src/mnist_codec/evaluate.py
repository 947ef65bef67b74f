"""Metrics of a codec on the evaluation split, and the comparison table."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import torch

from .models import count_parameters

# The reference notebook's published per-pixel MSE (trained and evaluated on all 70,000).
NOTEBOOK_MSE = {
    "pca": 0.017181,
    "ae": 0.013966,
    "deep_relu": 0.012785,
    "deep_tanh": 0.011016,
    "deep_leaky_relu": 0.008534,
}

DISPLAY = {"pca": "PCA", "ae": "AE (1 layer)"}
ACTIVATION_DISPLAY = {"relu": "ReLU", "tanh": "Tanh", "leaky_relu": "LeakyReLU", "gelu": "GELU", "elu": "ELU", "silu": "SiLU"}


def display_name(codec: str) -> str:
    if codec.startswith("deep_"):
        act = codec[len("deep_"):]
        return f"Deep AE ({ACTIVATION_DISPLAY.get(act, act)})"
    return DISPLAY.get(codec, codec)


@torch.no_grad()
def reconstruct(model, x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, k) and reconstructions (N, 784) of x (N, 784) float32."""
    model.eval()
    codes, recons = [], []
    for i in range(0, len(x), chunk):
        xb = torch.from_numpy(x[i: i + chunk])
        z = model.encode(xb)
        codes.append(z.numpy())
        recons.append(model.decode(z).numpy())
    return np.concatenate(codes), np.concatenate(recons)


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a per-pixel MSE, for pixels in [0, peak]."""
    return 10.0 * math.log10(peak**2 / mse) if mse > 0 else float("inf")


@torch.no_grad()
def encode_and_score(model, x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, k) and per-image MSE (N,) float64 of x (N, 784), one chunk at a time.

    Only a chunk of reconstructions exists at once, and squared errors are summed in
    float64, so scoring all 70,000 images needs no full-size copy in float64.
    """
    model.eval()
    codes, errors = [], []
    for i in range(0, len(x), chunk):
        xb = torch.from_numpy(x[i: i + chunk])
        z = model.encode(xb)
        diff = model.decode(z) - xb  # (chunk, 784)
        codes.append(z.numpy())
        errors.append((torch.sum(diff * diff, dim=1, dtype=torch.float64) / diff.shape[1]).numpy())
    return np.concatenate(codes), np.concatenate(errors)


def per_digit_mse(errors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean per-image MSE for each digit present in labels, keyed '0'..'9'."""
    return {str(d): float(errors[labels == d].mean()) for d in range(10) if np.any(labels == d)}


def codec_metrics(model, x: np.ndarray, y: np.ndarray) -> tuple[dict, np.ndarray]:
    """Metrics dict for metrics.json, and the codes (N, k)."""
    codes, errors = encode_and_score(model, x)
    mse = float(errors.mean())
    metrics = {
        "mse": mse,
        "psnr": psnr(mse),
        "code_size": int(codes.shape[1]),
        "params": int(count_parameters(model)),
        "mse_digit": per_digit_mse(errors, y),
    }
    return metrics, codes


def project_2d(codes: np.ndarray) -> np.ndarray:
    """(n, k) codes -> (n, 2) on their first two principal axes (signs fixed for stable plots)."""
    centred = codes.astype(np.float64) - codes.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    # Make the largest-magnitude entry of each axis positive: the same data gives the same picture.
    signs = np.sign(axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)])
    return (centred @ (axes * signs[:, None]).T).astype(np.float32)


def comparison_rows(metrics: dict[str, dict], protocol: str) -> list[dict]:
    """One row per codec, in the order of ``metrics``; notebook columns under protocol 'notebook'."""
    rows = []
    for codec, m in metrics.items():
        row = {
            "codec": codec,
            "name": display_name(codec),
            "code_size": m["code_size"],
            "params": m["params"],
            "mse": round(m["mse"], 6),
            "psnr_db": round(m["psnr"], 3),
        }
        if protocol == "notebook":
            ref = NOTEBOOK_MSE.get(codec)
            row["notebook_mse"] = ref if ref is not None else ""
            row["vs_notebook"] = f"{(m['mse'] / ref - 1) * 100:+.1f}%" if ref else ""
        rows.append(row)
    return rows


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


HEADERS = {
    "name": "Codec",
    "code_size": "Code size",
    "params": "Stored numbers",
    "mse": "MSE (per pixel)",
    "psnr_db": "PSNR (dB)",
    "notebook_mse": "Notebook MSE",
    "vs_notebook": "vs notebook",
}


def rows_to_markdown(rows: list[dict], protocol: str, n_eval: int) -> str:
    cols = [c for c in HEADERS if c in rows[0]]
    split = ("all 70,000 images, trained on the same (notebook protocol)" if protocol == "notebook"
             else "the held-out test images, trained on the training images (holdout protocol)")
    lines = [
        "# Reconstruction of MNIST digits through a 32-number code",
        "",
        f"Evaluated on {n_eval:,} images: {split}. Lower MSE and higher PSNR are better.",
        "",
        "| " + " | ".join(HEADERS[c] for c in cols) + " |",
        "|" + "|".join("---" if c == "name" else "---:" for c in cols) + "|",
    ]
    for row in rows:
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:,}" if isinstance(v, int) else (f"{v:.6f}" if c in ("mse", "notebook_mse") and v != "" else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
