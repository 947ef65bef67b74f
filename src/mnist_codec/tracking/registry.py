"""The Model Registry: every codec a version of ``mnist-codec``, found again by its fingerprint;
the ``champion`` alias; loading a version as it is served."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..interrupts import deferred
from .store import repo_root, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel

    from .runs import Run


REGISTERED_MODEL = "mnist-codec"  # every codec, every seed: one registered model, told apart by tags
CHAMPION = "champion"  # the alias of the version to serve
FINGERPRINT_TAG = "mnist_codec.fingerprint"


@dataclass(frozen=True)
class Registration:
    """A registered model version: a new one, or the one with the same fingerprint."""

    name: str
    version: str


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's progress bars and notes on logging a model are noise in a stage's log."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    loggers = [
        logging.getLogger(n)
        for n in (
            "mlflow.pyfunc",
            "mlflow.models.model",
            "mlflow.tracking._model_registry.fluent",
            "mlflow.store.model_registry.abstract_store",
        )
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def find_version(client: MlflowClient, fingerprint: str, name: str = REGISTERED_MODEL) -> ModelVersion | None:
    """The registered version carrying this fingerprint, or None."""
    found = client.search_model_versions(f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def register(
    client: MlflowClient, model_uri: str, run_id: str, tags: dict[str, str], name: str = REGISTERED_MODEL
) -> Registration:
    """Register ``model_uri`` as a new version of ``name`` with ``tags``, unless a version
    with the same fingerprint exists; the run is tagged with the version either way."""
    import mlflow

    with deferred():
        existing = find_version(client, tags[FINGERPRINT_TAG], name) if FINGERPRINT_TAG in tags else None
        if existing is not None:
            reg = Registration(name, str(existing.version))
        else:
            with quiet_mlflow():
                mv = mlflow.register_model(model_uri, name, tags=tags)
            reg = Registration(name, str(mv.version))
        client.set_tag(run_id, "mnist_codec.model_version", f"{name}/{reg.version}")
    return reg


def registry_client() -> MlflowClient:
    """A client on the project's store (the registry lives in the tracking store)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri(repo_root()))


def tag_versions(
    client: MlflowClient, tags_by_version: dict[str, dict[str, str]], name: str = REGISTERED_MODEL
) -> None:
    with deferred():
        for version, tags in tags_by_version.items():
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, str(value))


def champion(client: MlflowClient, name: str = REGISTERED_MODEL) -> tuple[str, dict[str, str]] | None:
    """(version, its tags) of the version the alias points at, or None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return str(mv.version), dict(mv.tags)


def set_champion(client: MlflowClient, version: str, name: str = REGISTERED_MODEL) -> None:
    with deferred():
        client.set_registered_model_alias(name, CHAMPION, version)


def model_uri(ref: str, name: str = REGISTERED_MODEL) -> str:
    """``models:/`` URI of a version given by number (``3``) or alias (``champion``)."""
    ref = str(ref).strip()
    if not ref:
        raise ValueError("empty model reference")
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def load_served(ref: str = CHAMPION, name: str = REGISTERED_MODEL) -> tuple[PyFuncModel, str]:
    """(pyfunc model, its URI) of a registered version, loaded as it is served.

    Raises DataError naming the store when the version or alias does not exist.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from ..errors import DataError

    uri = tracking_uri(repo_root())
    mlflow.set_tracking_uri(uri)
    target = model_uri(ref, name)
    with quiet_mlflow():
        try:
            return mlflow.pyfunc.load_model(target), target
        except MlflowException as exc:
            raise DataError(
                f"{target}: not found in the MLflow store {uri} ({exc.message.splitlines()[0]}); "
                f"`make repro` registers the codecs and sets '{CHAMPION}'"
            ) from None


# --- what made a model: its fingerprint ------------------------------------------------------

MODEL_CODE = Path(__file__).resolve().parents[1] / "codecs"  # the code that makes a model
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


def tree_digest(folder: str | Path, pattern: str = "*.py") -> str:
    """SHA-256 over the names and contents of the files matching ``pattern`` in ``folder``."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(Path(folder).glob(pattern)):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of the code that makes a model (``mnist_codec/codecs``: the models, the training
    loop, stacking, seeding, the device), read once per process. The rest of the package (how
    runs are logged, the servers, the commands) makes no weight and is left out."""
    return tree_digest(MODEL_CODE)


def version_tags(run: Run, spec: dict, eval_mse: float, eval_sha256: str, fingerprint_of: dict) -> dict[str, str]:
    """Registry tags of a codec trained in ``run``: its run's ties, code size, evaluation MSE,
    and a fingerprint of what made it (spec, params, seed, data, :func:`code_digest`) that
    keeps a re-run with the same inputs from registering a duplicate."""
    import hashlib
    import json

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
