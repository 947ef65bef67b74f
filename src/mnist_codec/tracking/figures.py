"""The figures a training run logs to MLflow: its loss curves and a reconstruction grid.

A side channel of the training stages: which figures are logged changes no DVC output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import timing

if TYPE_CHECKING:
    from .runs import Run


N_GRID = 8  # digits in the reconstruction grid logged with each training run


def log_figures(
    run: Run, name: str, models: dict, curves: dict | None, ex: np.ndarray, ey: np.ndarray, n: int = N_GRID
) -> None:
    """Log to ``run`` one grid of the first ``n`` evaluation digits with a row of
    reconstructions per entry of ``models`` ({row name: model}, e.g. one per seed) and, when
    given, one plot of every entry's loss curves (``curves``: {row name: {'epoch',
    'train_loss', 'eval_loss'} lists})."""
    import torch

    from ..reporting import plots

    plots.pyplot()  # imported outside the timed work: a fixed cost
    with timing.work("figures"):  # drawing and rendering to PNG; the artifact writes are small
        if curves is not None:
            fig = plots.loss_curves(curves, title=f"{name}: per-pixel MSE")
            run.log_figure(fig, "loss_curve.png")
            plots.close(fig)
        recons = {}
        with torch.no_grad():
            for row, model in models.items():
                model.eval()
                recons[row] = model(torch.from_numpy(ex[:n])).numpy()
        fig = plots.reconstruction_grid(ex[:n], recons, ey[:n])
        run.log_figure(fig, "reconstructions.png")
        plots.close(fig)
