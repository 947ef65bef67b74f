"""The rate–distortion curve: evaluation MSE against code size, one line per codec.

``make sweep`` queues one DVC experiment per code size (``dvc exp run --queue -n rd-<k>
-S latent_dim=<k>``) and runs them with ``dvc queue start``; ``mnist-codec sweep-report``
then reads their metrics with ``dvc.api.exp_show`` (:mod:`.exps`) and writes the figure and
the table.
PCA's curve is exact at every size from 1 to the largest: one fit of that many components,
since the first k components of PCA are the k-component PCA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

SIZES = (2, 4, 8, 16, 32, 64, 128)
PREFIX = "rd-"  # the sweep's experiments are named rd-<code size>
METRICS = "reports/metrics.json"


@dataclass(frozen=True)
class Point:
    codec: str
    size: int  # numbers in the code (latent_dim)
    mean: float  # evaluation MSE, mean over seeds
    low: float  # 95% interval over seeds (equal to the mean for one seed or PCA)
    high: float
    n: int  # seeds
    experiment: str


def pca_curve(train_x: np.ndarray, eval_x: np.ndarray, max_k: int) -> np.ndarray:
    """Evaluation MSE per pixel of PCA with k = 1..max_k components (index k-1), one fit.

    With orthonormal components, the squared error of a k-component reconstruction is the
    centred image's squared norm less that of its first k coordinates.
    """
    from ..codecs import pca

    fitted = pca.fit(train_x, max_k)
    centred = eval_x.astype(np.float64) - fitted["mean"].astype(np.float64)
    coords = centred @ fitted["components"].astype(np.float64).T  # (N, max_k)
    total = float(np.sum(centred * centred))
    kept = np.cumsum(np.sum(coords * coords, axis=0))
    return np.maximum(total - kept, 0.0) / centred.size


def collect(rows: list[dict]) -> list[Point]:
    """The sweep's points from ``dvc.api.exp_show`` rows: the latest finished experiment named
    rd-<k> for each code size k (sweeps from several commits may hold the same size), every
    codec in its metrics."""
    from . import exps

    latest: dict[int, exps.Experiment] = {}
    for name, exp in exps.latest_finished(rows).items():
        if name.startswith(PREFIX) and exp.params.get("latent_dim") is not None:
            latest.setdefault(int(exp.params["latent_dim"]), exp)  # rows come newest first
    points = [
        Point(codec, size, m["mean"], m["ci95_low"], m["ci95_high"], m["n"], exp.name)
        for size, exp in latest.items()
        for codec, m in exp.mse.items()
    ]
    return sorted(points, key=lambda p: (p.codec, p.size))


def _ranges(sizes: list[int], all_sizes: list[int]) -> str:
    """[2, 4, 8, 32] of [2, 4, 8, 16, 32] -> '2–8, 32': runs of consecutive sweep sizes."""
    runs: list[list[int]] = []
    for k in sizes:
        if runs and all_sizes.index(k) == all_sizes.index(runs[-1][-1]) + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def crossover(points: list[Point], pca: np.ndarray, names: dict[str, str]) -> str:
    """Where the autoencoders stop beating PCA, if they do: for the best of them at each size,
    then for each (by mean MSE)."""
    sizes = sorted({p.size for p in points})
    if not sizes:
        return "No sweep results."
    lost = [k for k in sizes if min(p.mean for p in points if p.size == k and p.codec != "pca") >= pca[k - 1]]
    if not lost:
        head = f"At every code size from {sizes[0]} to {sizes[-1]} an autoencoder beats PCA."
    else:
        head = (
            f"From {lost[0]} numbers on, no autoencoder beats PCA (at {lost[0]}: PCA {pca[lost[0] - 1]:.6f}, "
            f"the best autoencoder {min(p.mean for p in points if p.size == lost[0] and p.codec != 'pca'):.6f})."
        )
    each = []
    for codec in [c for c in names if c != "pca"]:
        wins = [p.size for p in points if p.codec == codec and p.mean < pca[p.size - 1]]
        each.append(f"{names[codec]} at {_ranges(sorted(wins), sizes)}" if wins else f"{names[codec]} at none")
    return head + " Each beats PCA (by its mean): " + "; ".join(each) + "."


def frame(points: list[Point]) -> pd.DataFrame:
    """The points as a table: one row per (codec, code size), the columns of :class:`Point`."""
    import dataclasses

    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(p) for p in points], columns=[f.name for f in dataclasses.fields(Point)])


def table(points: list[Point], pca: np.ndarray, names: dict[str, str]) -> str:
    """Markdown: a row per code size, a column per codec (mean ± half the 95% interval)."""
    df = frame(points)
    codecs = [c for c in names if c != "pca" and c in set(df["codec"])]
    cells = (
        df.assign(
            cell=[f"{m:.6f} ± {(h - lo) / 2:.6f}" for m, lo, h in zip(df["mean"], df["low"], df["high"], strict=True)]
        )
        .pivot(index="size", columns="codec", values="cell")
        .reindex(columns=codecs)
        .fillna("")
    )
    rows = [
        "| code size | PCA (exact) | " + " | ".join(names[c] for c in codecs) + " |",
        "|" + "---:|" * (len(codecs) + 2),
    ]
    rows += [f"| {k} | {pca[k - 1]:.6f} | " + " | ".join(cells.loc[k]) + " |" for k in cells.index]
    n = int(df.loc[df["codec"] != "pca", "n"].max()) if (df["codec"] != "pca").any() else 0
    return (
        "\n".join(rows)
        + f"\n\nEvaluation MSE per pixel, mean ± half the 95% interval over {n} seeds. "
        + crossover(points, pca, names)
        + "\n"
    )


def figure(points: list[Point], pca: np.ndarray, names: dict[str, str]) -> Figure:
    """Log-log plot: MSE against code size, PCA's exact curve and a line per autoencoder
    with its 95% interval as error bars."""
    from ..reporting.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ks = np.arange(1, len(pca) + 1)
    ax.plot(ks, pca, color="black", lw=1.5, label="PCA (exact, every size)")
    for codec in [c for c in names if c != "pca"]:
        pts = [p for p in points if p.codec == codec]
        if not pts:
            continue
        x = [p.size for p in pts]
        y = [p.mean for p in pts]
        err = [[p.mean - p.low for p in pts], [p.high - p.mean for p in pts]]
        ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, lw=1.2, label=names[codec])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.01, not 10^-2
    # between decades, label 2x and 5x only: all eight would crowd each other
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    sizes = sorted({p.size for p in points}) or [1, len(pca)]
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("code size (numbers per digit)")
    ax.set_ylabel("evaluation MSE per pixel")
    ax.set_title("Rate–distortion on MNIST: reconstruction error against code size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def wait_for_queue(repo: Path, poll: float = 10.0, timeout: float | None = None) -> list[str]:
    """Block until no experiment of ``repo`` is queued or running (or ``timeout`` seconds have
    passed); return the names still pending (none, unless it timed out)."""
    from . import exps

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pending = exps.pending(exps.show(repo))
        if not pending or (deadline is not None and time.monotonic() >= deadline):
            return pending
        time.sleep(poll)


def display_names(points: list[Point]) -> dict[str, str]:
    """Codec -> its name in the comparison table, PCA and the 1-layer AE first."""
    from ..evaluation.table import ACTIVATION_DISPLAY, ARCH_DISPLAY, display_name

    order = ["pca", "ae", *[f"{arch}_{a}" for arch in ARCH_DISPLAY for a in ACTIVATION_DISPLAY]]  # the table's order
    codecs = sorted({p.codec for p in points}, key=lambda c: (order.index(c) if c in order else len(order), c))
    return {c: display_name(c) for c in ["pca", *[c for c in codecs if c != "pca"]]}


def report(rows: list[dict], data_dir: Path, figure_path: Path, table_path: Path, csv_path: Path) -> list[Point]:
    """Collect the sweep from ``dvc.api.exp_show`` rows, compute PCA's exact curve on the
    workspace's splits, and write the figure, the table and the CSV."""
    from ..data.splits import load_splits

    points = collect(rows)
    if not points:
        raise DataError(f"no sweep results: no experiment named {PREFIX}<code size> with {METRICS} (run `make sweep`)")
    (train_x, _), (eval_x, _) = load_splits(data_dir)
    curve = pca_curve(train_x, eval_x, max(max(SIZES), max(p.size for p in points)))
    write(points, curve, display_names(points), figure_path, table_path, csv_path)
    return points


def write(
    points: list[Point], pca: np.ndarray, names: dict[str, str], figure_path: Path, table_path: Path, csv_path: Path
) -> None:
    from .. import fileio
    from ..atomic import atomic_path

    fig = figure(points, pca, names)
    with atomic_path(figure_path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    fileio.write_text(table_path, table(points, pca, names))
    import pandas as pd

    sizes = {p.size for p in points}
    exact = [
        {"codec": "pca_exact", "size": k, "mean": v, "low": v, "high": v, "n": 1, "experiment": ""}
        for k, v in enumerate(pca.tolist(), start=1)
        if k in sizes or math.log2(k).is_integer()
    ]
    csv = pd.concat([frame(points), pd.DataFrame(exact)], ignore_index=True).rename(
        columns={
            "size": "code_size",
            "mean": "mse_mean",
            "low": "mse_ci95_low",
            "high": "mse_ci95_high",
            "n": "n_seeds",
        }
    )
    fileio.write_text(csv_path, csv.to_csv(index=False, lineterminator="\n"))
