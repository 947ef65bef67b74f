"""DVC stage evaluate: every codec on the evaluation split; metrics and the comparison table."""

from pathlib import Path

from mnist_codec.pipeline import evaluate
from mnist_codec.runner import run_stage, stage_parser

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    for flag in ("data", "pca", "ae", "deep", "metrics", "detail", "table-md", "table-csv", "timings", "samples"):
        parser.add_argument(f"--{flag}", type=Path, required=True)
    a = parser.parse_args()
    run_stage(
        "evaluate",
        a.params,
        lambda params: evaluate.run(
            params, a.data, a.pca, a.ae, a.deep, a.metrics, a.detail, a.table_md, a.table_csv, a.timings, a.samples
        ),
        outputs=[a.metrics, a.detail, a.table_md, a.table_csv, a.timings, a.samples],
    )
