"""Where the repository is: the folder above the working directory that holds ``.dvc``.

Stage outputs are named by dvc.yaml; this only finds the root that output paths are checked
against and that the MLflow store lives in (a side channel of the stages).
"""

from __future__ import annotations

import os
from pathlib import Path


def workspace_root(start: str | Path | None = None) -> Path:
    """The nearest folder above ``start`` (default: the working directory) holding .dvc, else ``start``.

    For a queued or ``--temp`` experiment this is its own temporary workspace, where its
    stages write, while ``DVC_ROOT`` names the repository it came from.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here
