"""The Model Registry: every codec a version of ``mnist-codec``, found again by its fingerprint;
the ``champion`` alias; loading a version as it is served."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..interrupts import deferred
from .fingerprint import FINGERPRINT_TAG
from .store import quiet_mlflow, repo_root, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel


REGISTERED_MODEL = "mnist-codec"  # every codec, every seed: one registered model, told apart by tags
CHAMPION = "champion"  # the alias of the version to serve


@dataclass(frozen=True)
class Registration:
    """A registered model version: a new one, or the one with the same fingerprint."""

    name: str
    version: str


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
