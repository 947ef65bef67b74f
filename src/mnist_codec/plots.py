"""Figures, as matplotlib Figure objects built from plain arrays (no files, no globals)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(curves: dict[str, dict[str, Sequence[float]]], title: str = "Training curves"):
    """One line per model and loss: curves[name] = {'epoch': [...], 'train_loss': [...], 'eval_loss': [...]}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.plot(c["epoch"], c["train_loss"], "-o", color=color, ms=3, label=f"{name} train")
        ax.plot(c["epoch"], c["eval_loss"], "--", color=color, label=f"{name} eval")
    ax.set_xlabel("epoch")
    ax.set_ylabel("per-pixel MSE")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


def reconstruction_grid(originals: np.ndarray, recons: dict[str, np.ndarray], labels: np.ndarray | None = None):
    """Rows: the original digits, then each codec's reconstructions. Arrays are (n, 784)."""
    plt = _plt()
    rows = [("original", originals), *recons.items()]
    n = len(originals)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.6, 1.2 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c], 0, 1).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and labels is not None:
                ax.set_title(str(int(labels[c])), fontsize=8)
    fig.tight_layout()
    return fig


def scatter_2d(points: dict[str, np.ndarray], labels: np.ndarray, title: str):
    """One panel per entry: 2-D points (n, 2) coloured by digit label."""
    plt = _plt()
    k = len(points)
    cols = min(k, 3)
    nrows = -(-k // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 4 * nrows), squeeze=False)
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    for ax, (name, p) in zip(axes.flat, points.items()):
        sc = ax.scatter(p[:, 0], p[:, 1], c=labels, cmap="tab10", s=5, alpha=0.6, vmin=-0.5, vmax=9.5)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    handles, names = sc.legend_elements()
    fig.legend(handles, names, title="digit", loc="center right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    return fig


def per_digit_bars(per_digit: dict[str, Sequence[float]], title: str = "Per-digit reconstruction MSE"):
    """Grouped bars: for each digit 0-9, one bar per codec."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = list(per_digit)
    width = 0.8 / max(1, len(names))
    digits = np.arange(10)
    for i, name in enumerate(names):
        ax.bar(digits + (i - (len(names) - 1) / 2) * width, per_digit[name], width, label=name)
    ax.set_xticks(digits)
    ax.set_xlabel("digit")
    ax.set_ylabel("per-pixel MSE")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    _plt().close(fig)
