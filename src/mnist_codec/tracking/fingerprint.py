"""What made a registered model, as its fingerprint: the codec's spec, its params, seed and data,
and the code that computes its weights. Two runs with the same fingerprint make the same
model, so a re-run registers no duplicate version (:func:`mnist_codec.tracking.registry.register`)."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runs import Run

FINGERPRINT_TAG = "mnist_codec.fingerprint"

PACKAGE = Path(__file__).resolve().parents[1]
# The code that computes a model's weights: the codecs (models, PCA, the training loop, stacking,
# seeding, the device), the two pipeline modules that build the trainings and run them, a digit's
# size (data/__init__.py) and the cores a training plans its threads by (machine.py).
MODEL_CODE = (
    *sorted((PACKAGE / "codecs").glob("*.py")),
    PACKAGE / "pipeline" / "training.py",
    PACKAGE / "pipeline" / "pca.py",
    PACKAGE / "data" / "__init__.py",
    PACKAGE / "machine.py",
)
# Run tags a registered version carries too, so it can be traced back without its run.
VERSION_TAG_KEYS = (
    "mnist_codec.codec",
    "mnist_codec.seed",
    "mnist_codec.replicate",
    "mnist_codec.protocol",
    "mnist_codec.data_sha256",
    "mnist_codec.git_commit",
    "mnist_codec.dvc_exp",
    "mnist_codec.host",
)


def files_digest(paths: tuple[Path, ...], root: Path = PACKAGE) -> str:
    """SHA-256 over the names (relative to ``root``) and contents of ``paths``, in that order."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of :data:`MODEL_CODE`, read once per process. The rest of the package (how runs
    are logged, evaluation, the servers, the commands) computes no weight and is left out."""
    return files_digest(MODEL_CODE)


def version_tags(run: Run, spec: dict, eval_mse: float, eval_sha256: str, fingerprint_of: dict) -> dict[str, str]:
    """Registry tags of a codec trained in ``run``: its run's ties, code size, evaluation MSE,
    and a fingerprint of what made it (spec, params, seed, data, :func:`code_digest`) that
    keeps a re-run with the same inputs from registering a duplicate."""
    text = json.dumps({**fingerprint_of, "spec": spec, "code": code_digest()}, sort_keys=True)
    tags = {k: run.tags[k] for k in VERSION_TAG_KEYS if k in run.tags}
    tags.update(
        {
            "mnist_codec.latent_dim": str(spec["latent_dim"]),
            "mnist_codec.eval_mse": repr(eval_mse),
            "mnist_codec.eval_sha256": eval_sha256,
            "mnist_codec.run_id": run.run_id,
            FINGERPRINT_TAG: hashlib.sha256(text.encode()).hexdigest(),
        }
    )
    return tags
