"""A trained codec packaged for serving: logged to its MLflow run as a pyfunc model and
registered in the Model Registry (a version found again by its fingerprint is reused).

The serving layer does this, not the tracking layer: what a served model is (its code, its
artifacts, its signature) is decided in :mod:`mnist_codec.serving.model`, and tracking only
holds the run and the registry it is logged to.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..interrupts import deferred
from ..tracking.registry import Registration, register
from ..tracking.store import quiet_mlflow
from . import model as served

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from ..tracking.runs import Run


def log_model(
    run: Run, model: nn.Module, spec: dict, example: np.ndarray, version_tags: dict[str, str]
) -> Registration:
    """Log a codec to ``run`` as an MLflow pyfunc model and register it in the Model Registry.

    The model is logged *as code* (``served_model.py``) with its spec and weights as
    non-pickle artifacts (see :mod:`mnist_codec.serving.model`), with signature and input
    example; requirements are given, not inferred. A version whose
    ``mnist_codec.fingerprint`` tag equals this one's (same codec, params, seed, data
    and code) is reused instead of registering a duplicate.
    """
    import mlflow
    import numpy as np
    import torch

    torch_version = torch.__version__.split("+")[0]
    mlflow.set_tracking_uri(run.tracking_uri)  # the fluent API below must use this run's store
    with tempfile.TemporaryDirectory() as tmp, deferred(), quiet_mlflow(), mlflow.start_run(run_id=run.run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(served.CODE_FILE),
            artifacts=served.write_artifacts(model, spec, Path(tmp)),
            signature=served.signature(),
            input_example=(example, {"mode": served.DEFAULT_MODE}),
            pip_requirements=[
                f"torch=={torch_version}",
                f"numpy=={np.__version__}",
                f"mlflow=={mlflow.__version__}",
                "mnist-codec",
            ],
        )
    return register(run.client, info.model_uri, run.run_id, version_tags)
