"""DVC stage report: figures as PNGs and a self-contained HTML report."""

from pathlib import Path

from mnist_codec.pipeline import report
from mnist_codec.runner import run_stage, stage_parser

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    for flag in ("detail", "table-csv", "curves", "samples", "figures", "html"):
        parser.add_argument(f"--{flag}", type=Path, required=True)
    parser.add_argument("--rate-distortion", type=Path, default=None, help="the sweep's figure, shown last")
    a = parser.parse_args()
    run_stage(
        "report",
        a.params,
        lambda params: report.run(a.detail, a.table_csv, a.curves, a.samples, a.figures, a.html, a.rate_distortion),
        outputs=[a.figures, a.html],
    )
