"""One servable interface for every codec: images in, reconstructions, codes or images out.

A codec is served as an MLflow pyfunc model logged *as code*: MLflow runs
``served_model.py`` to build the model and reads two artifacts, ``codec.json`` (the
codec's spec) and ``weights.npz`` (its tensors, read with ``allow_pickle=False``), so
loading a model unpickles nothing. The functions here are the model's logic, pure and
testable without MLflow.

Requests are batches of rows. ``mode`` picks what a row is and what comes back:

- ``reconstruct`` (default): rows of 784 pixels in [0, 1] -> rows of 784 pixels;
- ``encode``: rows of 784 pixels -> rows of ``latent_dim`` code values;
- ``decode``: rows of ``latent_dim`` code values -> rows of 784 pixels.

Anything else is refused with :class:`BadInput`, whose message names the problem: pixels
outside [0, 1] are refused, not clipped (a client sending 0-255 values would otherwise get
a confident answer to the wrong question).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import fileio
from ..data import N_PIXELS
from ..errors import DataError, MnistCodecError

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from torch import nn

    from ..codecs.models import Codec


MODES = ("reconstruct", "encode", "decode")
DEFAULT_MODE = "reconstruct"
MAX_ROWS = 10_000  # per request: 10,000 images are 31 MB as float32 and about 60 MB as JSON
SPEC_FILE, WEIGHTS_FILE = "codec.json", "weights.npz"
CODE_FILE = Path(__file__).with_name("served_model.py")  # what MLflow runs to build the model


class BadInput(MnistCodecError):
    """A request the codec cannot answer: wrong shape, type, size or values."""


def check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise BadInput(f"mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def check_batch(values: Any, width: int, pixels: bool, max_rows: int = MAX_ROWS) -> np.ndarray:
    """``values`` as a (rows, width) float32 array, or :class:`BadInput` naming what is wrong.

    ``pixels``: the rows are images, whose values must lie in [0, 1].
    """
    what = "pixels" if pixels else "code values"
    try:
        array = np.asarray(values, dtype=np.float64)  # float64 first: a float32 cast would hide overflow
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{what} must be numbers ({exc})") from None
    if array.ndim != 2:
        raise BadInput(f"expected a 2-D batch (one row of {width} {what} per item), got shape {array.shape}")
    rows, cols = array.shape
    if rows == 0:
        raise BadInput("empty batch: send at least one row")
    if rows > max_rows:
        raise BadInput(f"batch of {rows} rows is over the limit of {max_rows} per request; send it in parts")
    if cols != width:
        raise BadInput(f"expected {width} {what} per row, got {cols}")
    bad = ~np.isfinite(array)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise BadInput(f"{int(bad.sum())} value(s) are NaN or infinite (first at row {r}, column {c})")
    if pixels:
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise BadInput(
                f"pixels must lie in [0, 1] (MNIST's 0-255 divided by 255); found values from "
                f"{low:g} to {high:g}. They are refused, not clipped"
            )
    return array.astype(np.float32)


def predict(codec: Codec, latent_dim: int, values: Any, mode: str = DEFAULT_MODE) -> np.ndarray:
    """The codec's answer to one request (see the module docstring), float32."""

    mode = check_mode(mode)
    return run(codec, check_batch(values, latent_dim if mode == "decode" else N_PIXELS, mode != "decode"), mode)


def run(codec: Codec, rows: np.ndarray, mode: str) -> np.ndarray:
    """The codec on rows already checked for ``mode``: (N, 784) pixels or (N, latent_dim) codes."""
    import torch

    x = torch.from_numpy(rows)
    with torch.no_grad():
        if mode == "encode":
            out = codec.encode(x)
        elif mode == "decode":
            out = codec.decode(x)
        else:
            out = codec.decode(codec.encode(x))
    return out.numpy()


def write_artifacts(model: nn.Module, spec: dict, folder: Path) -> dict[str, str]:
    """Write a codec's spec and weights into ``folder``; the artifacts mapping MLflow logs."""
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    spec_path, weights_path = folder / SPEC_FILE, folder / WEIGHTS_FILE
    fileio.write_text(spec_path, json.dumps(spec, sort_keys=True) + "\n")
    fileio.write_npz(weights_path, state)
    return {"spec": str(spec_path), "weights": str(weights_path)}


def load_codec(spec_path: str | Path, weights_path: str | Path) -> tuple[Codec, dict]:
    """(codec module in eval mode, spec) from the two artifacts; nothing is unpickled."""
    import torch

    from ..codecs import models

    try:
        spec = json.loads(Path(spec_path).read_text())
        with np.load(weights_path, allow_pickle=False) as npz:
            state = {k: torch.from_numpy(npz[k]) for k in npz.files}
    except (OSError, ValueError) as exc:  # numpy refuses pickled arrays with ValueError
        raise DataError(f"{weights_path}: not a valid codec artifact ({exc})") from None
    codec = models.build(spec)
    try:
        codec.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"{weights_path}: weights do not match spec {spec}: {exc}") from None
    codec.eval()
    return codec, spec


def signature() -> ModelSignature:
    """Input: a float32 batch (rows of 784 pixels, or of ``latent_dim`` codes to decode);
    param ``mode``; output: a float32 batch. One tensor spec serves both widths; they are
    checked by :func:`check_batch`, which can say which width the mode needs."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    batch = Schema([TensorSpec(np.dtype(np.float32), (-1, -1))])
    return ModelSignature(inputs=batch, outputs=batch, params=ParamSchema([ParamSpec("mode", "string", DEFAULT_MODE)]))
