"""DVC stage train_ae: the one-layer autoencoder 784 -> latent_dim -> 784, on every seed."""

from pathlib import Path

from mnist_codec.pipeline import train_ae
from mnist_codec.runner import run_stage, stage_parser

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder of models and records, one per seed")
    parser.add_argument("--curves", type=Path, required=True, help="folder of loss curves (.csv), one per seed")
    args = parser.parse_args()
    run_stage(
        "train_ae",
        args.params,
        lambda params: train_ae.run(params, args.data, args.out, args.curves),
        outputs=[args.out, args.curves],
    )
