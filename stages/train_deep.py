"""DVC stage train_deep: one deep autoencoder per name in `activation`, on every seed."""

from pathlib import Path

from mnist_codec.pipeline import train_deep
from mnist_codec.runner import run_stage, stage_parser

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder of models and records")
    parser.add_argument("--curves", type=Path, required=True, help="folder of loss curves (.csv)")
    args = parser.parse_args()
    run_stage(
        "train_deep",
        args.params,
        lambda params: train_deep.run(params, args.data, args.out, args.curves),
        outputs=[args.out, args.curves],
    )
