"""The figures a training run logs to MLflow: its loss curve and a reconstruction grid.

A side channel of the training stages: which figures are logged changes no DVC output.
"""

from __future__ import annotations

import numpy as np

from .. import timing

N_GRID = 8  # digits in the reconstruction grid logged with each training run


def log_figures(run, name: str, model, curves: dict | None, ex: np.ndarray, ey: np.ndarray, n: int = N_GRID) -> None:
    """Log ``model``'s reconstructions of the first ``n`` evaluation digits (and its loss
    curves, when given: {'epoch', 'train_loss', 'eval_loss'} lists) to ``run``."""
    import torch

    from ..reporting import plots

    plots.pyplot()  # imported outside the timed work: a fixed cost
    with timing.work("figures"):  # drawing and rendering to PNG; the artifact writes are small
        if curves is not None:
            fig = plots.loss_curves({name: curves}, title=f"{name}: per-pixel MSE")
            run.log_figure(fig, "loss_curve.png")
            plots.close(fig)
        model.eval()
        with torch.no_grad():
            recon = model(torch.from_numpy(ex[:n])).numpy()
        fig = plots.reconstruction_grid(ex[:n], {name: recon}, ey[:n])
        run.log_figure(fig, "reconstructions.png")
        plots.close(fig)
