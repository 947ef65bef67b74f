"""Digits as PNG files and codes as lines of numbers, for ``mnist-codec encode`` and ``decode``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..data import N_PIXELS, SIDE
from .model import BadInput, check_batch


def read_digit_png(path: str | Path) -> np.ndarray:
    """A 28x28 grayscale PNG (white digit on black, as in MNIST) as (1, 784) float32 in [0, 1].

    Colour images are converted to grayscale; other sizes are refused, not resized
    (resizing changes stroke widths the codec has never seen).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            size, gray = img.size, img.convert("L")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInput(f"{path}: not a readable image ({exc})") from None
    if size != (SIDE, SIDE):
        raise BadInput(
            f"{path}: image is {size[0]}x{size[1]} pixels; the codec takes {SIDE}x{SIDE} "
            f"(MNIST's size), white digit on black: resize it first"
        )
    return (np.asarray(gray, dtype=np.float32) / 255.0).reshape(1, N_PIXELS)


def write_digit_png(path: str | Path, pixels: np.ndarray) -> None:
    """Write one image of 784 values in [0, 1] as a 28x28 8-bit grayscale PNG, atomically."""
    from PIL import Image

    values = np.clip(np.asarray(pixels, dtype=np.float64).reshape(SIDE, SIDE), 0.0, 1.0)
    img = Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def format_code(code: np.ndarray) -> str:
    """One code as a line of numbers (9 significant digits: float32 round-trips)."""
    return " ".join(f"{v:.9g}" for v in np.asarray(code, dtype=np.float64).ravel())


def parse_code(words: list[str], latent_dim: int) -> np.ndarray:
    """Numbers typed or piped in, as a (1, latent_dim) batch; a clear error otherwise."""
    try:
        values = [float(w) for w in words]
    except ValueError as exc:
        raise BadInput(f"a code is {latent_dim} numbers ({exc})") from None
    if len(values) != latent_dim:
        raise BadInput(f"the model's code has {latent_dim} numbers, got {len(values)}")
    return check_batch([values], latent_dim, pixels=False)
