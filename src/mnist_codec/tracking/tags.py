"""The tags every MLflow run of a stage carries: MLflow's source tags (the stage script, the
commit), the host, the commit and where the code came from (``main@1a2b3c4-dirty``), the DVC
experiment, the stage, the pipeline execution's id, the protocol, and what
``$MNIST_CODEC_RUN_TAGS`` adds (a cluster sweep's node and point)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

from .. import keys
from ..errors import MnistCodecError


def _git(*args: str, cwd: str | Path | None = None) -> str | None:
    """git's output, or None where git is missing, slow or says no (outside a repository)."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(cwd: str | Path | None = None) -> str:
    return _git("rev-parse", "HEAD", cwd=cwd) or "unknown"


CODE_PATHS = ("src", "stages", "dvc.yaml", "params.yaml")  # what "the code" of a run is


def git_source(commit: str, cwd: str | Path | None = None) -> str:
    """Where a workspace run's code came from, as its run name shows it: ``main@1a2b3c4``
    (the branch and commit), ``1a2b3c4`` on a detached HEAD, with ``-dirty`` where the code
    (:data:`CODE_PATHS`) differs from the commit, as ``git describe --dirty`` marks it; ''
    outside git."""
    if commit == "unknown":
        return ""
    branch = _git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=cwd)
    status = _git("status", "--porcelain", "--", *CODE_PATHS, cwd=cwd)
    source = f"{branch}@{commit[:7]}" if branch else commit[:7]
    return source + ("-dirty" if status else "")


def pipeline_id(commit: str, exp_name: str, params: dict[str, Any]) -> str:
    """Shared tag of all runs of one pipeline configuration (commit, experiment, params)."""
    text = repr((commit, exp_name, sorted(keys.flatten(params).items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def entry_point(argv0: str) -> str:
    """The script a run came from, relative to the repository (stages/pca.py), else as given."""
    from ..workspace import workspace_root

    path = Path(argv0).resolve()
    try:
        return path.relative_to(workspace_root()).as_posix()
    except ValueError:
        return path.name or argv0


RUN_TAGS_ENV = "MNIST_CODEC_RUN_TAGS"  # a JSON object of more tags for every run, e.g. where a cluster ran it


class RunTagsError(MnistCodecError):
    """``$MNIST_CODEC_RUN_TAGS`` is not a JSON object of ``mnist_codec.*`` tags."""


def extra_tags() -> dict[str, str]:
    """The tags ``$MNIST_CODEC_RUN_TAGS`` adds to every run (a cluster sweep's task sets them:
    the Ray node and host, the sweep and its point), checked: a JSON object of
    ``mnist_codec.*`` keys."""
    import json

    text = os.environ.get(RUN_TAGS_ENV, "").strip()
    if not text:
        return {}
    try:
        tags = json.loads(text)
    except ValueError as exc:
        raise RunTagsError(f"{RUN_TAGS_ENV} is not JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(tags, dict) or not all(isinstance(k, str) and k.startswith("mnist_codec.") for k in tags):
        raise RunTagsError(f"{RUN_TAGS_ENV} must be a JSON object of mnist_codec.* tags: {text[:80]!r}")
    return {k: str(v) for k, v in tags.items()}


def base_tags(stage: str, all_params: dict[str, Any]) -> dict[str, str]:
    """Tags every run carries: MLflow's source tags, host, commit, DVC experiment, stage,
    pipeline id, protocol, and those ``$MNIST_CODEC_RUN_TAGS`` adds.

    ``all_params`` is the whole params file, so every stage of one execution shares the id.
    """
    import socket
    import sys

    from mlflow.utils.mlflow_tags import (
        MLFLOW_GIT_COMMIT,
        MLFLOW_SOURCE_NAME,
        MLFLOW_SOURCE_TYPE,
    )

    commit = git_commit()
    exp_name = os.environ.get("DVC_EXP_NAME") or "workspace"
    source = git_source(commit) if exp_name == "workspace" else ""
    return {
        # MLflow's own source tags fill the UI's Source column: the stage script and commit
        MLFLOW_SOURCE_NAME: entry_point(sys.argv[0]),
        MLFLOW_SOURCE_TYPE: "LOCAL",
        MLFLOW_GIT_COMMIT: commit,
        "mnist_codec.host": socket.gethostname(),
        "mnist_codec.stage": stage,
        "mnist_codec.git_commit": commit,
        "mnist_codec.dvc_exp": exp_name,
        "mnist_codec.pipeline": pipeline_id(commit, exp_name, all_params),
        "mnist_codec.protocol": str(all_params.get("data", {}).get("protocol", "")),
        **({"mnist_codec.source": source} if source else {}),
        **extra_tags(),
    }
