"""The reference notebook's computation as one plain script: the baseline `make bench` times
the pipeline against.

It does what the notebook's cells do, the way they do it: PCA (2 and 32 components) with
scikit-learn on all 70,000 images; a 784-32-784 autoencoder trained for 1 epoch and then
10 more; the 784-256-64-32-64-256-784 autoencoder with ReLU, Tanh and LeakyReLU, 10 epochs
each; Adam 1e-3, batch 128, a shuffling DataLoader, MSE; each model scored on all the
images it trained on. Nothing of mnist-codec is imported. The only departures: MNIST comes
from the four IDX files bundled with the package (the 70,000 images in OpenML's order,
train then test) instead of `fetch_openml`, which needs the internet, and the 2-D scatter
is written to a PNG instead of shown.

Prints one JSON line at the end: the device, torch's thread count, each model's MSE and
each step's wall seconds.

    python benchmarks/notebook_baseline.py [--mnist DIR] [--out DIR] [--limit N] [--epochs E]

``--limit`` and ``--epochs`` shrink the run (the tests use them); the benchmark runs the
notebook's full size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BUNDLED = Path(__file__).resolve().parents[1] / "src/mnist_codec/datasets/mnist"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file's array: the magic's 4th byte is the number of dimensions, then one
    big-endian uint32 per dimension, then the uint8 values."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images = np.concatenate(
        [read_idx(folder / "train-images-idx3-ubyte.gz"), read_idx(folder / "t10k-images-idx3-ubyte.gz")]
    )
    labels = np.concatenate(
        [read_idx(folder / "train-labels-idx1-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")]
    )
    return images.reshape(len(images), 784).astype(np.float32) / 255.0, labels.astype(np.int64)


class ShallowAE(nn.Module):
    """Task 2: one linear layer each way, ReLU on the code, Sigmoid on the pixels."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 32), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(32, 784), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


class DeepAE(nn.Module):
    """Task 3: 784-256-64-32 and back, the activation after every layer but the last."""

    def __init__(self, act: type[nn.Module]):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 256), act(), nn.Linear(256, 64), act(), nn.Linear(64, 32), act())
        self.decoder = nn.Sequential(
            nn.Linear(32, 64), act(), nn.Linear(64, 256), act(), nn.Linear(256, 784), nn.Sigmoid()
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, epochs: int) -> list[float]:
    """The notebook's loop: per batch zero_grad, forward, MSE, backward, step; the epoch's
    loss read back batch by batch with .item()."""
    loss_fn = nn.MSELoss()
    history = []
    model.train()
    for _ in range(epochs):
        total = 0.0
        for batch, target in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(batch), target)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        history.append(total / len(loader.dataset))
    return history


def score(model: nn.Module, x: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return nn.functional.mse_loss(model(x), x).item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=BUNDLED, help="folder of the four MNIST .gz files")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "notebook_baseline")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N images")
    parser.add_argument(
        "--epochs", type=int, default=10, help="the deep AEs' epochs, and the shallow AE's after its first"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    mse: dict[str, float] = {}

    start = time.perf_counter()
    x, y = load_mnist(args.mnist)
    x, y = x[: args.limit], y[: args.limit]
    seconds["fetch"] = time.perf_counter() - start

    start = time.perf_counter()
    points = PCA(n_components=2).fit_transform(x)
    fig, ax = plt.subplots(figsize=(8, 6))
    shown = slice(0, 2000)
    dots = ax.scatter(points[shown, 0], points[shown, 1], c=y[shown], cmap="tab10", s=5, alpha=0.6)
    ax.legend(*dots.legend_elements(), title="Digit", loc="upper right", fontsize="small")
    fig.savefig(args.out / "pca_2d.png")
    plt.close(fig)
    pca = PCA(n_components=32)
    mse["pca32"] = float(np.mean((x - pca.inverse_transform(pca.fit_transform(x))) ** 2))
    seconds["pca"] = time.perf_counter() - start

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = torch.from_numpy(x).to(device)
    loader = DataLoader(TensorDataset(images, images), batch_size=128, shuffle=True)

    start = time.perf_counter()
    shallow = ShallowAE().to(device)
    adam = torch.optim.Adam(shallow.parameters(), lr=1e-3)
    fit(shallow, adam, loader, 1)  # the notebook's first cell trains one epoch ...
    fit(shallow, adam, loader, args.epochs)  # ... and the next the same model, same Adam, for ten more
    mse["ae"] = score(shallow, images)
    seconds["train_ae"] = time.perf_counter() - start

    start = time.perf_counter()
    for act in (nn.ReLU, nn.Tanh, nn.LeakyReLU):
        began = time.perf_counter()
        deep = DeepAE(act).to(device)
        fit(deep, torch.optim.Adam(deep.parameters(), lr=1e-3), loader, args.epochs)
        mse[f"deep_{act.__name__}"] = score(deep, images)
        seconds[f"train_deep_{act.__name__}"] = time.perf_counter() - began
    seconds["train_deep"] = time.perf_counter() - start

    print(
        json.dumps(
            {
                "device": str(device),
                "torch_threads": torch.get_num_threads(),
                "mse": mse,
                "seconds": {k: round(v, 2) for k, v in seconds.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
