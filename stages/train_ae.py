"""DVC stage train_ae: the one-layer autoencoder 784 -> latent_dim -> 784."""
from pathlib import Path

from mnist_codec.cli import run_stage, stage_parser
from mnist_codec.pipeline import run_train_ae

if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--curve", type=Path, required=True)
    args = parser.parse_args()
    run_stage("train_ae", args.params,
              lambda params: run_train_ae(params, args.data, args.model, args.record, args.curve),
              outputs=[args.model, args.record, args.curve])
