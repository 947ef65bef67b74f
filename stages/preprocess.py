"""DVC stage preprocess: parse the IDX files, write the data.protocol split."""

from pathlib import Path

from mnist_codec.pipeline import preprocess
from mnist_codec.runner import run_stage, stage_parser

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run_stage("preprocess", args.params, lambda params: preprocess.run(params, args.raw, args.out), outputs=[args.out])
