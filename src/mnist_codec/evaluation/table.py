"""The comparison table: one row per codec, as a pandas DataFrame, its CSV and its Markdown.

It needs no torch: the report stage renders it from the CSV without paying for torch's import.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# The reference notebook's published per-pixel MSE (trained and evaluated on all 70,000).
NOTEBOOK_MSE = {
    "pca": 0.017181,
    "ae": 0.013966,
    "deep_relu": 0.012785,
    "deep_tanh": 0.011016,
    "deep_leaky_relu": 0.008534,
}

DISPLAY = {"pca": "PCA", "ae": "AE (1 layer)"}
ACTIVATION_DISPLAY = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "leaky_relu": "LeakyReLU",
    "gelu": "GELU",
    "elu": "ELU",
    "silu": "SiLU",
}
ARCH_DISPLAY = {"deep": "Deep AE", "conv": "Conv AE"}  # codec name prefix -> display


def display_name(codec: str) -> str:
    arch, _, act = codec.partition("_")
    if arch in ARCH_DISPLAY and act:
        return f"{ARCH_DISPLAY[arch]} ({ACTIVATION_DISPLAY.get(act, act)})"
    return DISPLAY.get(codec, codec)


def comparison_table(metrics: dict[str, dict], protocol: str) -> pd.DataFrame:
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
            "stored_numbers": m["stored_numbers"],
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
    return pd.DataFrame(rows)


def notebook_verdict(mse: dict, ref: float) -> str:
    """Where the notebook's published figure falls against our 95% interval."""
    diff = f"{(mse['mean'] / ref - 1) * 100:+.1f}%"
    if mse["n"] == 1:  # deterministic: no interval, the difference itself
        return f"deterministic ({diff})"
    if mse["ci95_low"] <= ref <= mse["ci95_high"]:
        return f"within our interval ({diff})"
    return f"ours lower ({diff})" if ref > mse["ci95_high"] else f"ours higher ({diff})"


def to_csv(table: pd.DataFrame) -> str:
    """The table as CSV: floats as Python writes them (shortest round trip), blanks empty."""
    return table.to_csv(index=False, lineterminator="\n")


def read_csv(path: str | Path) -> pd.DataFrame:
    """A comparison table read back from its CSV, every cell as the text written there."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


HEADERS = {
    "name": "Codec",
    "code_size": "Code size",
    "stored_numbers": "Stored numbers",
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
        "stored_numbers": f"{int(row['stored_numbers']):,}",
        "n_seeds": "1 (deterministic)" if int(row["n_seeds"]) == 1 and row["codec"] == "pca" else str(row["n_seeds"]),
        "mse": _pm(row["mse_mean"], row["mse_ci95_low"], row["mse_ci95_high"], 6),
        "psnr": _pm(row["psnr_mean"], row["psnr_ci95_low"], row["psnr_ci95_high"], 2),
        "rank": str(row["rank"]) + (f" (not separated from {', '.join(tied)})" if tied else ""),
    }
    if "notebook_mse" in row:
        cells["notebook_mse"] = f"{float(row['notebook_mse']):.6f}" if row["notebook_mse"] != "" else ""
        cells["vs_notebook"] = str(row["vs_notebook"])
    return cells


INTERVAL_NOTE = (
    "Each autoencoder is trained on {n} seeds; ± is the half-width of the 95% confidence "
    "interval of the mean over seeds (Student's t), so a retrained codec's mean would fall "
    "inside it 95 times in 100. Codecs whose intervals overlap are not separated: the table "
    "gives them no order. PCA is deterministic and fitted once."
)


SPLIT_TEXT = {
    "notebook": "all 70,000 images, trained on the same (notebook protocol)",
    "holdout": "the held-out test images, trained on the training images (holdout protocol)",
    "validation": "the last sixth of the training images, trained on the rest; the test images are "
    "not used (validation protocol)",
}


def to_markdown(table: pd.DataFrame, protocol: str, n_eval: int) -> str:
    rows = table.to_dict("records")
    cells = [display_cells(r) for r in rows]
    cols = [c for c in HEADERS if c in cells[0]]
    split = SPLIT_TEXT.get(protocol, f"protocol {protocol}")
    n = int(table["n_seeds"].astype(int).max())
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
