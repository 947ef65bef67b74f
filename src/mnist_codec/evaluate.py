"""Metrics of a codec on the evaluation split, and the comparison table.

The table's half (rows, cells, Markdown, CSV) needs no torch: the report stage uses it
without paying for torch's import, which the scoring functions do on first call.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

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


ARCH_DISPLAY = {"deep": "Deep AE", "conv": "Conv AE"}  # codec name prefix -> display


def display_name(codec: str) -> str:
    arch, _, act = codec.partition("_")
    if arch in ARCH_DISPLAY and act:
        return f"{ARCH_DISPLAY[arch]} ({ACTIVATION_DISPLAY.get(act, act)})"
    return DISPLAY.get(codec, codec)


def reconstruct(model, x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, k) and reconstructions (N, 784) of x (N, 784) float32."""
    import torch

    model.eval()
    codes, recons = [], []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            xb = torch.from_numpy(x[i: i + chunk])
            z = model.encode(xb)
            codes.append(z.numpy())
            recons.append(model.decode(z).numpy())
    return np.concatenate(codes), np.concatenate(recons)


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a per-pixel MSE, for pixels in [0, peak]."""
    return 10.0 * math.log10(peak**2 / mse) if mse > 0 else float("inf")


def encode_and_score(model, x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, k) and per-image MSE (N,) float64 of x (N, 784), one chunk at a time.

    Only a chunk of reconstructions exists at once, and squared errors are summed in
    float64, so scoring all 70,000 images needs no full-size copy in float64.
    """
    import torch

    model.eval()
    codes, errors = [], []
    with torch.no_grad():
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
    """One trained model's metrics (MSE, PSNR, code size, stored numbers, per-digit MSE) and codes (N, k)."""
    from .models import count_parameters

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


def aggregate(per_seed: list[dict]) -> dict:
    """A codec's entry in metrics.json from its models' metrics, one per seed.

    MSE and PSNR become summaries over seeds (mean, std, n, 95% interval, each seed's
    value); per-digit MSE the same without the per-seed lists; code size and stored
    numbers are the same for every seed.
    """
    from .stats import summarize

    def digit(d: str) -> dict:
        s = summarize([m["mse_digit"][d] for m in per_seed])
        del s["per_seed"]
        return s

    first = per_seed[0]
    return {
        "mse": summarize([m["mse"] for m in per_seed]),
        "psnr": summarize([m["psnr"] for m in per_seed]),
        "code_size": first["code_size"],
        "params": first["params"],
        "mse_digit": {d: digit(d) for d in first["mse_digit"]},
    }


def project_2d(codes: np.ndarray) -> np.ndarray:
    """(n, k) codes -> (n, 2) on their first two principal axes (signs fixed for stable plots)."""
    centred = codes.astype(np.float64) - codes.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    # Make the largest-magnitude entry of each axis positive: the same data gives the same picture.
    signs = np.sign(axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)])
    return (centred @ (axes * signs[:, None]).T).astype(np.float32)


def comparison_rows(metrics: dict[str, dict], protocol: str) -> list[dict]:
    """One row per codec, in the order of ``metrics``: plain numbers, as the CSV holds them.

    ``rank`` is 1 + the number of codecs clearly better (whole interval below); codecs whose
    MSE intervals overlap are listed in ``not_separated_from`` instead of being ranked.
    Under protocol 'notebook' the notebook's published MSE and where it falls against our
    interval are added.
    """
    from .stats import ranks

    ranked = ranks({c: m["mse"] for c, m in metrics.items()})
    rows = []
    for codec, m in metrics.items():
        mse, ps = m["mse"], m["psnr"]
        rank, tied = ranked[codec]
        row = {
            "codec": codec,
            "name": display_name(codec),
            "code_size": m["code_size"],
            "params": m["params"],
            "n_seeds": mse["n"],
            "mse_mean": mse["mean"],
            "mse_ci95_low": mse["ci95_low"],
            "mse_ci95_high": mse["ci95_high"],
            "mse_std": mse["std"],
            "psnr_mean": ps["mean"],
            "psnr_ci95_low": ps["ci95_low"],
            "psnr_ci95_high": ps["ci95_high"],
            "rank": rank,
            "not_separated_from": ";".join(tied),
        }
        if protocol == "notebook":
            ref = NOTEBOOK_MSE.get(codec)
            row["notebook_mse"] = ref if ref is not None else ""
            row["vs_notebook"] = notebook_verdict(mse, ref) if ref is not None else ""
        rows.append(row)
    return rows


def notebook_verdict(mse: dict, ref: float) -> str:
    """Where the notebook's published figure falls against our 95% interval."""
    diff = f"{(mse['mean'] / ref - 1) * 100:+.1f}%"
    if mse["n"] == 1:  # deterministic: no interval, the difference itself
        return f"deterministic ({diff})"
    if mse["ci95_low"] <= ref <= mse["ci95_high"]:
        return f"within our interval ({diff})"
    return f"ours lower ({diff})" if ref > mse["ci95_high"] else f"ours higher ({diff})"


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
    "n_seeds": "Seeds",
    "mse": "MSE per pixel (mean ± 95% CI)",
    "psnr": "PSNR dB (mean ± 95% CI)",
    "rank": "Rank",
    "notebook_mse": "Notebook MSE",
    "vs_notebook": "Notebook vs ours",
}


def _pm(mean: float, low: float, high: float, digits: int) -> str:
    half = (float(high) - float(low)) / 2
    return f"{float(mean):.{digits}f}" if half == 0 else f"{float(mean):.{digits}f} ± {half:.{digits}f}"


def display_cells(row: dict, names: dict[str, str] | None = None) -> dict[str, str]:
    """A row (from comparison_rows, or read back from the CSV as text) as table cells."""
    names = names or {}
    tied = [names.get(c, display_name(c)) for c in str(row["not_separated_from"]).split(";") if c]
    cells = {
        "name": str(row["name"]),
        "code_size": f"{int(row['code_size']):,}",
        "params": f"{int(row['params']):,}",
        "n_seeds": "1 (deterministic)" if int(row["n_seeds"]) == 1 and row["codec"] == "pca" else str(row["n_seeds"]),
        "mse": _pm(row["mse_mean"], row["mse_ci95_low"], row["mse_ci95_high"], 6),
        "psnr": _pm(row["psnr_mean"], row["psnr_ci95_low"], row["psnr_ci95_high"], 2),
        "rank": str(row["rank"]) + (f" (not separated from {', '.join(tied)})" if tied else ""),
    }
    if "notebook_mse" in row:
        cells["notebook_mse"] = f"{float(row['notebook_mse']):.6f}" if row["notebook_mse"] != "" else ""
        cells["vs_notebook"] = str(row["vs_notebook"])
    return cells


INTERVAL_NOTE = ("Each autoencoder is trained on {n} seeds; ± is the half-width of the 95% confidence "
                 "interval of the mean over seeds (Student's t), so a retrained codec's mean would fall "
                 "inside it 95 times in 100. Codecs whose intervals overlap are not separated: the table "
                 "gives them no order. PCA is deterministic and fitted once.")


SPLIT_TEXT = {
    "notebook": "all 70,000 images, trained on the same (notebook protocol)",
    "holdout": "the held-out test images, trained on the training images (holdout protocol)",
    "validation": "the last sixth of the training images, trained on the rest; the test images are "
                  "not used (validation protocol)",
}


def rows_to_markdown(rows: list[dict], protocol: str, n_eval: int) -> str:
    cells = [display_cells(r) for r in rows]
    cols = [c for c in HEADERS if c in cells[0]]
    split = SPLIT_TEXT.get(protocol, f"protocol {protocol}")
    n = max(int(r["n_seeds"]) for r in rows)
    lines = [
        f"# Reconstruction of MNIST digits through a {rows[0]['code_size']}-number code",
        "",
        f"Evaluated on {n_eval:,} images: {split}. Lower MSE and higher PSNR are better.",
        INTERVAL_NOTE.format(n=n),
        "",
        "| " + " | ".join(HEADERS[c] for c in cols) + " |",
        "|" + "|".join("---" if c in ("name", "rank", "vs_notebook") else "---:" for c in cols) + "|",
    ]
    lines += ["| " + " | ".join(c[k] for k in cols) + " |" for c in cells]
    return "\n".join(lines) + "\n"
