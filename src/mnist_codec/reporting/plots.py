"""Figures, as matplotlib Figure objects built from plain arrays (no files, no globals)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..data import SIDE

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (imported on first use: it costs half a second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(curves: dict[str, dict[str, Sequence[float]]], title: str = "Training curves") -> Figure:
    """One line per model and loss: curves[name] = {'epoch': [...], 'train_loss': [...], 'eval_loss': [...]}."""
    return loss_bands(
        {
            name: {
                "epoch": np.asarray(c["epoch"]),
                "train_loss": np.asarray([c["train_loss"]]),
                "eval_loss": np.asarray([c["eval_loss"]]),
            }
            for name, c in curves.items()
        },
        title,
    )


def reconstruction_grid(
    originals: np.ndarray, recons: dict[str, np.ndarray], labels: np.ndarray | None = None
) -> Figure:
    """Rows: the original digits, then each codec's reconstructions. Arrays are (n, 784)."""
    plt = pyplot()
    rows = [("original", originals), *recons.items()]
    n = len(originals)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.6, 1.2 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c], 0, 1).reshape(SIDE, SIDE), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and labels is not None:
                ax.set_title(str(int(labels[c])), fontsize=8)
    fig.tight_layout()
    return fig


def scatter_2d(points: dict[str, np.ndarray], labels: np.ndarray, title: str) -> Figure:
    """One panel per entry: 2-D points (n, 2) coloured by digit label."""
    plt = pyplot()
    k = len(points)
    cols = min(k, 3)
    nrows = -(-k // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 4 * nrows), squeeze=False)
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    for ax, (name, p) in zip(axes.flat[:k], points.items(), strict=True):
        sc = ax.scatter(p[:, 0], p[:, 1], c=labels, cmap="tab10", s=5, alpha=0.6, vmin=-0.5, vmax=9.5)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    handles, names = sc.legend_elements()
    fig.legend(handles, names, title="digit", loc="center right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    return fig


def loss_bands(
    curves: dict[str, dict[str, np.ndarray]], title: str = "Training curves", colors: dict[str, str] | None = None
) -> Figure:
    """Per codec, the mean over seeds of its training (solid) and evaluation (dashed) loss, with
    a shaded 95% interval of that mean; curves[name] = {'epoch': (E,), 'train_loss': (S, E),
    'eval_loss': (S, E)}; ``colors`` maps names to colours (default: C0, C1, ... in order)."""
    from ..evaluation.stats import summarize

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    banded = any(len(c["train_loss"]) > 1 for c in curves.values())
    for i, (name, c) in enumerate(curves.items()):
        color = (colors or {}).get(name, f"C{i % 10}")
        for key, style in (("train_loss", "-"), ("eval_loss", "--")):
            per_epoch = [summarize(c[key][:, e]) for e in range(len(c["epoch"]))]
            mean = [s["mean"] for s in per_epoch]
            n = per_epoch[0]["n"]
            label = f"{name} {key.split('_')[0]}" + (f" (mean of {n})" if n > 1 and key == "train_loss" else "")
            ax.plot(c["epoch"], mean, style, color=color, marker="o" if style == "-" else None, ms=3, label=label)
            if n > 1:
                ax.fill_between(
                    c["epoch"],
                    [s["ci95_low"] for s in per_epoch],
                    [s["ci95_high"] for s in per_epoch],
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                )
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("per-pixel MSE" + (" (shaded: 95% interval over seeds)" if banded else ""))
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


def mse_intervals(
    summaries: dict[str, dict], title: str = "Reconstruction MSE: mean and 95% interval over seeds"
) -> Figure:
    """One row per codec: each seed's MSE (crosses), the mean (dot) and its 95% interval (bar)."""
    plt = pyplot()
    names = list(summaries)
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(names) + 1.5))
    ys = np.arange(len(names))[::-1]
    for i, (y, name) in enumerate(zip(ys, names, strict=True)):
        s = summaries[name]
        err = [[s["mean"] - s["ci95_low"]], [s["ci95_high"] - s["mean"]]]
        ax.errorbar(s["mean"], y, xerr=err, fmt="o", color=f"C{i % 10}", capsize=6, lw=2)
        ax.plot(s["per_seed"], [y] * len(s["per_seed"]), "x", color="black", ms=6)
        ax.annotate(
            f"n={s['n']}", (s["ci95_high"], y), xytext=(8, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.set_yticks(ys)
    ax.set_yticklabels(names)
    lo = min(min(s["ci95_low"], *s["per_seed"]) for s in summaries.values())
    hi = max(max(s["ci95_high"], *s["per_seed"]) for s in summaries.values())
    pad = 0.06 * (hi - lo) or 0.05 * hi
    ax.set_xlim(lo - pad, hi + 2 * pad)  # no bars from zero: the axis shows the differences (room for "n=")
    ax.set_xlabel("per-pixel MSE, lower is better  (x: one seed's model, dot: mean, bar: 95% interval)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def per_digit_bars(
    per_digit: dict[str, Sequence[float]],
    title: str = "Per-digit reconstruction MSE",
    errors: dict[str, Sequence[float]] | None = None,
) -> Figure:
    """Grouped bars: for each digit 0-9, one bar per codec; ``errors`` gives error-bar half-widths."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = list(per_digit)
    width = 0.8 / max(1, len(names))
    digits = np.arange(10)
    for i, name in enumerate(names):
        yerr = errors.get(name) if errors else None
        ax.bar(
            digits + (i - (len(names) - 1) / 2) * width,
            per_digit[name],
            width,
            label=name,
            yerr=yerr,
            capsize=2,
            error_kw={"lw": 0.8},
        )
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # headroom for the legend above the bars
    ax.set_xticks(digits)
    ax.set_xlabel("digit")
    ax.set_ylabel("per-pixel MSE")
    ax.set_title(title)
    ax.legend(fontsize="small", ncol=3, loc="upper center")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    pyplot().close(fig)
