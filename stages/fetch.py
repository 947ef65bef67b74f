"""DVC stage fetch: the four MNIST files from data.source, verified, into --out."""

from pathlib import Path

from mnist_codec.pipeline import fetch
from mnist_codec.runner import run_stage, stage_parser

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run_stage("fetch", args.params, lambda params: fetch.run(params, args.out), outputs=[args.out])
