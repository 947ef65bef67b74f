"""The one place where params.yaml is read and validated.

The schema is a set of pydantic models: types, bounds and choices are declared on the
fields, unknown keys are forbidden. Every key is checked before any work starts; a bad
file raises :class:`ParamsError` naming the key, the value found and what is allowed,
the last worded from the field's own declaration.

A stage reads every value from params.yaml, where DVC tracks it key by key: a key missing
there is refused (``load(..., complete=True)``) rather than filled from a default here, so
no value a stage uses lives in this module, and editing it (a message, a bound) re-runs no
stage. The defaults serve library callers and tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, field_validator, model_validator
from pydantic.fields import FieldInfo

from . import config, keys
from .config import allowed
from .data import N_PIXELS
from .errors import ParamsError

Precision = Literal["fp32", "bf16"]  # the number formats a training may use
PRECISIONS: tuple[str, ...] = get_args(Precision)

Activation = Literal["relu", "tanh", "leaky_relu", "gelu", "elu", "silu"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
StrictInt = Annotated[int, Strict()]  # no bools, no floats, no numeric strings
LR_HINT = "YAML reads 1e-3 as text; write 1.0e-3"
WD_HINT = "YAML reads 1e-4 as text; write 1.0e-4"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    source: Annotated[
        str,
        Field(
            json_schema_extra={
                "accepts": "`bundled`, or a URL starting with https://, http:// or file:// (no `..` segments)"
            },
            description=(
                "where fetch copies MNIST from: `bundled` (the four files inside the package), or the base URL "
                "(`https://…/`, `file:///…/`) of a mirror serving the standard names "
                "(`train-images-idx3-ubyte.gz`, …); "
                "every file is verified by its size and SHA-256"
            ),
        ),
    ] = "bundled"
    protocol: Annotated[
        Literal["holdout", "validation", "notebook"],
        Field(
            description=(
                "`holdout`: fit on the 60,000 training images, evaluate on the 10,000 test images (per-epoch test "
                "losses are for monitoring only); `validation`: fit on the first 50,000 training images, evaluate "
                "on the last 10,000, the test images unused (where settings are chosen); `notebook`: fit and "
                "evaluate on all 70,000, as the notebook did"
            )
        ),
    ] = "holdout"
    train_limit: Annotated[
        StrictInt | None,
        Field(
            ge=1,
            description=(
                "keep only the first N training images, for quick runs (under `notebook`: the first N of the 70,000, "
                "which it also evaluates on)"
            ),
        ),
    ] = None
    eval_limit: Annotated[
        StrictInt | None,
        Field(
            ge=1,
            description=(
                "keep only the first N evaluation images, for quick runs; refused under `notebook`, whose "
                "evaluation images are its training images"
            ),
        ),
    ] = None

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, v: Any) -> str:
        if not isinstance(v, str) or (v != "bundled" and not v.startswith(("https://", "http://", "file://"))):
            raise ValueError("'bundled' or a base URL starting with https://, http:// or file://")
        if ".." in unquote(urlsplit(v).path).split("/"):
            raise ValueError("a URL without '..' path segments (give the mirror's full path)")
        return v


class TrainParams(_Section):
    epochs: Annotated[StrictInt, Field(ge=1, le=10_000, description="passes over the training split")] = 10
    batch_size: Annotated[
        StrictInt,
        Field(
            ge=1,
            le=1_000_000,
            description=("images per Adam step; the last partial batch is a step too, as in the notebook"),
        ),
    ] = 128
    lr: Annotated[
        float,
        Strict(),
        Field(
            gt=0,
            allow_inf_nan=False,
            json_schema_extra={"accepts": f"a positive number such as 1.0e-3 ({LR_HINT})"},
            description=(
                "Adam's learning rate (the peak of `cosine` and `onecycle`); write `1.0e-3`, not `1e-3`, "
                "which YAML reads as text"
            ),
        ),
    ] = 1e-3
    schedule: Annotated[
        Literal["constant", "cosine", "onecycle"],
        Field(
            description=(
                "learning rate per epoch: `constant` (the notebook's), `cosine` (half a cosine from `train.lr` down) "
                "or `onecycle` (a rise from lr/25 to lr over the first 30% of the epochs, then half a cosine down to "
                "lr/1e4); resumed at the right epoch after an interruption"
            )
        ),
    ] = "constant"
    weight_decay: Annotated[
        float,
        Strict(),
        Field(
            ge=0,
            lt=1,
            allow_inf_nan=False,
            json_schema_extra={
                "accepts": f"a number from 0 (none, the notebook's) up to 1, such as 1.0e-4 ({WD_HINT})"
            },
            description=("above 0: decoupled weight decay (AdamW); 0 keeps the notebook's Adam, number for number"),
        ),
    ] = 0.0
    precision: Annotated[
        Precision,
        Field(
            description=(
                "number format of the training products: `fp32` (the notebook's) or `bf16` (autocast: the forward and "
                "backward matrix products in bfloat16; weights, Adam's state and the loss in fp32; "
                "scoring stays fp32). "
                "`bf16` runs only where the hardware has native bfloat16 (a CPU with AVX512-BF16 or AMX-BF16, a GPU "
                "of compute capability 8.0 or later) and is refused elsewhere"
            )
        ),
    ] = "fp32"


class DeepParams(_Section):
    arch: Annotated[
        Literal["mlp", "conv"],
        Field(
            description=(
                "the deep stage's codec, one per activation: `mlp` (the notebook's deep AE, `deep_<activation>`) or "
                "`conv` (a convolutional AE, `conv_<activation>`)"
            )
        ),
    ] = "mlp"
    hidden: Annotated[
        tuple[Annotated[int, Strict(), Field(ge=1, le=4096)], ...],
        Field(
            min_length=1,
            json_schema_extra={"accepts": "a non-empty list of integers from 1 to 4096, e.g. [256, 64]"},
            description=(
                "`mlp`: the widths between 784 and `latent_dim`, integers from 1 to 4096; the decoder mirrors them"
            ),
        ),
    ] = (256, 64)
    channels: Annotated[
        tuple[Annotated[int, Strict(), Field(ge=1, le=512)], ...],
        Field(
            min_length=1,
            max_length=4,
            json_schema_extra={
                "accepts": "a list of 1 to 4 integers from 1 to 512 (one stride-2 convolution each), e.g. [32, 64]"
            },
            description=(
                "`conv`: 1 to 4 channel counts (1 to 512) of stride-2 3×3 convolutions (28→14→7…), then a linear map "
                "to the code; the decoder mirrors them with transposed convolutions and ends in a Sigmoid"
            ),
        ),
    ] = (32, 64)


class EvaluateParams(_Section):
    n_examples: Annotated[StrictInt, Field(ge=1, le=64, description="digits in the reconstruction grid")] = 8
    n_projection: Annotated[
        StrictInt, Field(ge=10, le=100_000, description=("digits in the 2-D scatter plots of PCA and of the codes"))
    ] = 2000


class Params(_Section):
    seed: Annotated[
        StrictInt,
        Field(
            ge=0,
            le=2**32 - 1,
            description=(
                "every model is seeded from this, its own name and its replicate number, so its result does not "
                "depend on which others were trained"
            ),
        ),
    ] = 42
    n_seeds: Annotated[
        StrictInt,
        Field(
            ge=1,
            le=100,
            description=(
                "how many times each autoencoder is trained, on seeds derived from `seed` (the first is the one a "
                "1-seed run uses); results are the mean and 95% interval over them. PCA is deterministic and "
                "fitted once"
            ),
        ),
    ] = 3
    device: Annotated[
        Literal["auto", "cpu", "cuda"],
        Field(
            description=(
                "`auto` (CUDA if torch sees a GPU, else the CPU), `cpu` or `cuda`; the device used is recorded "
                "with each run"
            )
        ),
    ] = "auto"
    latent_dim: Annotated[StrictInt, Field(ge=1, le=N_PIXELS - 1, description="the code size of every codec")] = 32
    activation: Annotated[
        tuple[Activation, ...],
        BeforeValidator(lambda v: [v] if isinstance(v, str) else v),  # one name is a list of one
        Field(
            min_length=1,
            json_schema_extra={"accepts": "one of " + ", ".join(ACTIVATIONS) + ", or a list of them"},
            description="the deep AE's activation: one name, or a list (one deep AE each)",
        ),
    ] = ("relu", "tanh", "leaky_relu")
    data: DataParams = DataParams()
    train: TrainParams = TrainParams()
    deep: DeepParams = DeepParams()
    evaluate: EvaluateParams = EvaluateParams()

    @field_validator("activation")
    @classmethod
    def _activation(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError("a list without repeated names")
        return names

    @model_validator(mode="after")
    def _notebook_evaluates_on_its_training_images(self) -> Params:
        if self.data.protocol == "notebook" and self.data.eval_limit is not None:
            raise ValueError(
                f"'data.eval_limit' = {self.data.eval_limit!r} is not allowed under data.protocol 'notebook', which "
                "evaluates on the images it trains on; set it to null and shrink both with data.train_limit"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (lists, not tuples), as it would be written to params.yaml."""
        return self.model_dump(mode="json")


SECTIONS: dict[str, type[_Section]] = {
    name: f.annotation
    for name, f in Params.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, _Section)
}
# dotted key -> its declaration, derived from the models: a key missing here is unknown
SCHEMA: dict[str, FieldInfo] = {
    **{k: f for k, f in Params.model_fields.items() if k not in SECTIONS},
    **{f"{s}.{k}": f for s, cls in SECTIONS.items() for k, f in cls.model_fields.items()},
}


# --- messages ------------------------------------------------------------------------------


def reference() -> list[dict[str, str]]:
    """One row per key, from the schema itself: the docs' params reference (it cannot drift)."""
    defaults = Params().to_dict()
    return [
        {"key": key, "default": keys.get(defaults, key), "accepts": allowed(f), "meaning": f.description or ""}
        for key, f in SCHEMA.items()
    ]


def validate(raw: Any, source: str = "params") -> Params:
    """Check a params mapping (as read from YAML) and return typed :class:`Params`.

    Missing keys take their defaults; unknown keys and bad values raise ParamsError naming
    ``source`` (the first problem found, in schema order).
    """
    return config.check(Params, config.Document(source, raw))


def missing_keys(raw: dict) -> list[str]:
    """The schema's keys (``section.key`` for sections) that ``raw`` does not set."""
    return [key for key in SCHEMA if not keys.has(raw, key)]


def read(path: str | Path = "params.yaml") -> tuple[Params, dict]:
    """The params in ``path``, checked, and the file's plain data (what -S overrides and a
    search's trials start from): the file is read once."""
    doc = config.read_yaml(path, what="the pipeline's parameters")
    return config.check(Params, doc), doc.data or {}


def load(path: str | Path = "params.yaml", complete: bool = False) -> Params:
    """Read and validate a params file; with ``complete`` (every stage), each key of the
    schema must be set in it."""
    params, raw = read(path)
    missing = missing_keys(raw) if complete else []
    if missing:
        defaults = params.to_dict()
        shown = ", ".join(f"'{k}' (default {keys.get(defaults, k)!r})" for k in missing)
        raise ParamsError(
            f"{path}: does not set {shown}; every key a stage reads is written there, "
            "where DVC tracks it, not taken from a default"
        )
    return params
