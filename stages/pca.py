"""DVC stage pca: fit PCA with latent_dim components on the training split."""

from pathlib import Path

from mnist_codec.pipeline import pca
from mnist_codec.runner import run_stage, stage_parser

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="components and mean (.npz)")
    parser.add_argument("--record", type=Path, required=True, help="training record (.json)")
    args = parser.parse_args()
    run_stage(
        "pca",
        args.params,
        lambda params: pca.run(params, args.data, args.out, args.record),
        outputs=[args.out, args.record],
    )
