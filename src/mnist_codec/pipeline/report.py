"""Stage report: the figures as PNGs and a self-contained HTML page."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import timing
from ..reporting import html, plots

log = logging.getLogger(__name__)


def run(
    detail_path: Path,
    table_csv: Path,
    curves_dir: Path,
    samples_path: Path,
    figures_dir: Path,
    html_path: Path,
    rate_distortion: Path | None = None,
) -> None:
    plots.pyplot()  # imported outside the timed work: a fixed cost
    with timing.work("figures"):
        html.build(detail_path, table_csv, curves_dir, samples_path, figures_dir, html_path, rate_distortion)
    log.info("report: %s and figures in %s", html_path, figures_dir)
