"""The report: PNG figures and one self-contained HTML page (images embedded), rendered from
the Jinja2 template ``templates/report.html.j2`` with autoescaping on."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import fileio
from ..atomic import atomic_dir, write_bytes
from ..errors import DataError
from ..evaluation.stats import half_width
from ..evaluation.table import HEADERS, INTERVAL_NOTE, display_cells, display_name, read_csv
from . import plots

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def read_curves(curves_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``<codec>/seed<r>.csv`` below curves_dir -> per codec {'epoch': (E,), 'train_loss': (S, E),
    'eval_loss': (S, E)}, codecs in folder order (ae, then the deep ones)."""
    by_codec: dict[str, list[dict]] = {}
    for path in sorted(Path(curves_dir).rglob("seed*.csv"), key=lambda p: (len(p.parts), p.parent.name, p.name)):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        by_codec.setdefault(path.parent.name, []).append(
            {k: np.array([float(r[k]) for r in rows]) for k in ("epoch", "train_loss", "eval_loss")}
        )
    if not by_codec:
        raise DataError(f"{curves_dir}: no training curves found")
    curves = {}
    for codec, seeds in by_codec.items():
        if len({len(s["epoch"]) for s in seeds}) != 1:
            raise DataError(f"{curves_dir}/{codec}: the seeds' curves have different numbers of epochs")
        curves[display_name(codec)] = {
            "epoch": seeds[0]["epoch"],
            "train_loss": np.stack([s["train_loss"] for s in seeds]),
            "eval_loss": np.stack([s["eval_loss"] for s in seeds]),
        }
    return curves


def save_figure(fig: Figure, path: Path) -> bytes:
    """Render to PNG bytes, write them atomically, close the figure; return the bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plots.close(fig)
    png = buf.getvalue()
    write_bytes(path, png)
    return png


def make_figures(metrics: dict, curves: dict, samples: dict[str, np.ndarray]) -> dict[str, Figure]:
    """file name -> matplotlib Figure, in the order the report shows them."""
    codecs = list(metrics)
    names = {c: display_name(c) for c in codecs}
    curves = {names[c]: curves[names[c]] for c in codecs if names[c] in curves}  # the table's order

    def digit(c: str, d: int, f: Callable[[dict], float]) -> float:
        s = metrics[c]["mse_digit"].get(str(d))
        return f(s) if s is not None else np.nan

    return {
        "mse_intervals.png": plots.mse_intervals({names[c]: metrics[c]["mse"] for c in codecs}),
        "reconstructions.png": plots.reconstruction_grid(
            samples["originals"], {names[c]: samples[f"recon_{c}"] for c in codecs}, samples["labels"]
        ),
        "training_curves.png": plots.loss_bands(
            curves,
            "Training (solid) and evaluation (dashed) loss",
            colors={names[c]: f"C{i % 10}" for i, c in enumerate(codecs)},
        ),
        "per_digit_mse.png": plots.per_digit_bars(
            {names[c]: [digit(c, d, lambda s: s["mean"]) for d in range(10)] for c in codecs},
            errors={names[c]: [digit(c, d, half_width) for d in range(10)] for c in codecs},
        ),
        "pca_scatter.png": plots.scatter_2d(
            {"PCA, 2 components": samples["pca_2d"]},
            samples["proj_labels"],
            f"MNIST: 2-D PCA projection of {len(samples['proj_labels']):,} digits",
        ),
        "codes_2d.png": plots.scatter_2d(
            {names[c]: samples[f"proj_{c}"] for c in codecs},
            samples["proj_labels"],
            "2-D projection (PCA) of each codec's codes",
        ),
    }


CAPTIONS = {
    "mse_intervals.png": "Reconstruction MSE of each codec: every seed's model (crosses), their mean (dot) and "
    "the 95% confidence interval of the mean (bar). PCA is deterministic: one point.",
    "reconstructions.png": "The first evaluation digits and each codec's reconstruction (the first seed's model).",
    "training_curves.png": "Per-pixel MSE per epoch, mean over seeds: training (solid) and evaluation split "
    "(dashed); the shading is the 95% interval of the mean.",
    "per_digit_mse.png": "Reconstruction error by digit: mean over seeds, error bars the 95% interval.",
    "pca_scatter.png": "The digits on their first two principal components, coloured by label.",
    "codes_2d.png": "Each codec's code (the first seed's model) projected to 2-D with PCA, coloured by label.",
    "rate_distortion.png": "Rate–distortion (make sweep): evaluation MSE against code size, PCA exact at every "
    "size from one fit, each autoencoder at 2 to 128 numbers with its 95% interval.",
}


def render_html(table: list[dict], pngs: dict[str, bytes]) -> str:
    """The page: the comparison table, the interval note, then every figure with its caption."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mnist_codec.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    cells = [display_cells(row) for row in table]
    cols = [c for c in HEADERS if cells and c in cells[0]]
    n = max(int(row["n_seeds"]) for row in table)
    figures = [
        {
            "name": name,
            "caption": CAPTIONS.get(name, name),
            "src": "data:image/png;base64," + base64.b64encode(png).decode(),
        }
        for name, png in pngs.items()
    ]
    return env.get_template("report.html.j2").render(
        headers=[HEADERS[c] for c in cols],
        rows=[[row[c] for c in cols] for row in cells],
        note=INTERVAL_NOTE.format(n=n),
        figures=figures,
    )


def build(
    detail_path: Path,
    table_csv: Path,
    curves_dir: Path,
    samples_path: Path,
    figures_dir: Path,
    html_path: Path,
    rate_distortion: Path | None = None,
) -> None:
    """The figures into ``figures_dir`` and the page; ``rate_distortion`` (the sweep's figure,
    made outside the pipeline by ``make sweep``) is shown last when given."""
    sweep_png = None
    if rate_distortion is not None:  # read first: a missing file stops the stage before it writes
        try:
            sweep_png = Path(rate_distortion).read_bytes()
        except FileNotFoundError:
            raise DataError(f"{rate_distortion}: not found; `make sweep` makes it") from None
    metrics = fileio.read_json(detail_path)
    with np.load(samples_path, allow_pickle=False) as npz:
        samples = {k: npz[k] for k in npz.files}
    figures = make_figures(metrics, read_curves(curves_dir), samples)
    with atomic_dir(figures_dir) as tmp:
        pngs = {name: save_figure(fig, tmp / name) for name, fig in figures.items()}
    if sweep_png is not None:
        pngs["rate_distortion.png"] = sweep_png
    fileio.write_text(html_path, render_html(read_csv(table_csv).to_dict("records"), pngs))
