"""The codecs: PCA, the one-layer, deep and convolutional autoencoders, as torch modules.

Every codec has ``encode`` (N, 784) -> (N, k) and ``decode`` (N, k) -> (N, 784), so
evaluation treats them alike. A codec is rebuilt from its ``spec`` (a small dict of
plain values) and a state_dict; nothing is pickled.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..data import N_PIXELS, SIDE
from ..errors import DataError

ACTIVATION_LAYERS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class Autoencoder(nn.Module):
    """An encoder and a decoder; forward reconstructs (N, 784) -> (N, 784)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class PCACodec(nn.Module):
    """PCA as a linear codec: z = (x - mean) W^T, x' = z W + mean, W (k, 784) orthonormal rows."""

    mean: torch.Tensor
    components: torch.Tensor

    def __init__(self, mean: torch.Tensor, components: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)  # (784,)
        self.register_buffer("components", components)  # (k, 784)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.components.T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.components + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


Codec = Autoencoder | PCACodec  # what build() makes: encode (N, 784) -> (N, k), decode back


def shallow_autoencoder(latent_dim: int) -> Autoencoder:
    """The notebook's one-layer AE: Linear(784, k) + ReLU, Linear(k, 784) + Sigmoid."""
    return Autoencoder(
        nn.Sequential(nn.Linear(N_PIXELS, latent_dim), nn.ReLU()),
        nn.Sequential(nn.Linear(latent_dim, N_PIXELS), nn.Sigmoid()),
    )


def deep_autoencoder(latent_dim: int, hidden: tuple[int, ...], activation: str) -> Autoencoder:
    """The notebook's deep AE: 784 -> hidden... -> k -> reversed hidden... -> 784.

    The activation follows every linear layer (the bottleneck included, as in the notebook)
    except the last, which is followed by a Sigmoid so outputs stay in [0, 1].
    """
    act = ACTIVATION_LAYERS[activation]
    widths = [N_PIXELS, *hidden, latent_dim]
    enc: list[nn.Module] = []
    for a, b in pairwise(widths):
        enc += [nn.Linear(a, b), act()]
    back = widths[::-1]
    dec: list[nn.Module] = []
    for a, b in pairwise(back):
        dec += [nn.Linear(a, b), act()]
    dec[-1] = nn.Sigmoid()
    return Autoencoder(nn.Sequential(*enc), nn.Sequential(*dec))


def conv_sides(n_layers: int, side: int = SIDE) -> list[int]:
    """Feature-map sides through ``n_layers`` stride-2 convolutions: 28 -> 14 -> 7 -> 4 -> 2."""
    sides = [side]
    for _ in range(n_layers):
        sides.append((sides[-1] - 1) // 2 + 1)  # kernel 3, padding 1, stride 2
    return sides


def conv_autoencoder(latent_dim: int, channels: tuple[int, ...], activation: str) -> Autoencoder:
    """A convolutional AE around the same ``latent_dim`` code; it reads and writes (N, 784).

    Encoder: a stride-2 3x3 ``Conv2d`` per entry of ``channels`` (each halves the side,
    28 -> 14 -> 7), then a linear map of the last feature map to the code. The code is left
    linear (no activation: a ReLU there would switch code numbers off). The decoder mirrors
    it: a linear map and ``ConvTranspose2d`` layers back to one 28x28 channel and a Sigmoid.
    """
    act = ACTIVATION_LAYERS[activation]
    sides = conv_sides(len(channels))
    chans = [1, *channels]
    flat = chans[-1] * sides[-1] ** 2
    enc: list[nn.Module] = [nn.Unflatten(1, (1, SIDE, SIDE))]  # (N, 784) -> (N, 1, 28, 28)
    for a, b in pairwise(chans):
        enc += [nn.Conv2d(a, b, 3, stride=2, padding=1), act()]
    enc += [nn.Flatten(), nn.Linear(flat, latent_dim)]  # (N, C*s*s) -> (N, k)
    dec: list[nn.Module] = [nn.Linear(latent_dim, flat), act(), nn.Unflatten(1, (chans[-1], sides[-1], sides[-1]))]
    for i in range(len(channels), 0, -1):  # back up the sides: output_padding picks 7 -> 14, 4 -> 7
        out_pad = sides[i - 1] - (2 * sides[i] - 1)
        dec += [nn.ConvTranspose2d(chans[i], chans[i - 1], 3, stride=2, padding=1, output_padding=out_pad), act()]
    dec[-1] = nn.Sigmoid()
    dec.append(nn.Flatten())  # (N, 1, 28, 28) -> (N, 784)
    return Autoencoder(nn.Sequential(*enc), nn.Sequential(*dec))


def build(spec: dict[str, Any]) -> Codec:
    """A fresh codec from its spec: {'kind': 'ae'|'deep'|'conv'|'pca', 'latent_dim': k, ...}."""
    kind = spec.get("kind")
    if kind == "ae":
        return shallow_autoencoder(int(spec["latent_dim"]))
    if kind == "deep":
        return deep_autoencoder(int(spec["latent_dim"]), tuple(spec["hidden"]), spec["activation"])
    if kind == "conv":
        return conv_autoencoder(int(spec["latent_dim"]), tuple(spec["channels"]), spec["activation"])
    if kind == "pca":
        k = int(spec["latent_dim"])
        return PCACodec(torch.zeros(N_PIXELS), torch.zeros(k, N_PIXELS))
    raise DataError(f"unknown codec kind {kind!r} in spec {spec}")


def count_parameters(model: nn.Module) -> int:
    """Numbers the codec stores: trainable parameters, or PCA's mean and components."""
    n = sum(p.numel() for p in model.parameters())
    return n + sum(b.numel() for b in model.buffers())


@torch.no_grad()
def reconstruction_mse(model: nn.Module, x: torch.Tensor, chunk: int = 512) -> float:
    """Mean per-pixel squared error of model(x) against x, computed in chunks (of 512: their
    activations stay in the CPU's caches; larger chunks scored slower on the CPUs measured)."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        total += torch.sum((model(xb) - xb) ** 2, dtype=torch.float64)
    return float(total.item() / x.numel())


def save(model: nn.Module, spec: dict[str, Any], path: str | Path) -> None:
    """Write {'spec', 'state_dict'} with torch.save, atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"spec": dict(spec), "state_dict": state}, tmp)


def load(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a codec saved by :func:`save`. Only tensors and plain values are accepted."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: model file not found") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for bad files
        raise DataError(f"{path}: not a valid mnist-codec model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or "spec" not in blob or "state_dict" not in blob:
        raise DataError(f"{path}: not a valid mnist-codec model file (expected keys 'spec' and 'state_dict')")
    model = build(blob["spec"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not match spec {blob['spec']}: {exc}") from None
    model.eval()
    return model, blob["spec"]


def pca_codec_from_arrays(mean: np.ndarray, components: np.ndarray) -> PCACodec:
    return PCACodec(
        torch.from_numpy(np.asarray(mean, np.float32)), torch.from_numpy(np.asarray(components, np.float32))
    )
