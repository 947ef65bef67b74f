"""A trained codec packaged for serving: logged to its MLflow run as a pyfunc model and
registered in the Model Registry (a version found again by its fingerprint is reused).

The serving layer does this, not the tracking layer: what a served model is (its code, its
artifacts, its signature) is decided in :mod:`mnist_codec.serving.model`, and tracking only
holds the run and the registry it is logged to.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
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


# The model's requirements: each package's module. MLflow checks every requirement against the
# environment, and to find a requirement's module it first maps every installed distribution's
# files (importlib_metadata.packages_distributions: about 27,000 files, 1.5 s of each process that
# logs a model on a 2-core AMD EPYC), although these four are the running versions of packages
# whose modules are known.
REQUIRED_MODULES = {"torch": "torch", "numpy": "numpy", "mlflow": "mlflow", "mnist-codec": "mnist_codec"}


@contextlib.contextmanager
def known_modules() -> Iterator[None]:
    """MLflow's module-to-package map, for the duration of a model's logging, as the four
    requirements' own where MLflow has computed none yet; its own map again afterwards (computed
    in full the next time something infers requirements). MLflow keeps the map in a private
    global: where a version keeps it elsewhere, nothing is changed and MLflow computes it."""
    from mlflow.utils import requirements_utils as requirements

    if getattr(requirements, "_MODULES_TO_PACKAGES", "absent") is not None:
        yield
        return
    requirements._MODULES_TO_PACKAGES = {m: [p] for p, m in REQUIRED_MODULES.items()}  # type: ignore[assignment]
    try:
        yield
    finally:
        requirements._MODULES_TO_PACKAGES = None
        requirements._PACKAGES_TO_MODULES = None


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

    versions = {"torch": torch.__version__.split("+")[0], "numpy": np.__version__, "mlflow": mlflow.__version__}
    mlflow.set_tracking_uri(run.tracking_uri)  # the fluent API below must use this run's store
    known = known_modules()
    with tempfile.TemporaryDirectory() as tmp, deferred(), quiet_mlflow(), known, mlflow.start_run(run_id=run.run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(served.CODE_FILE),
            artifacts=served.write_artifacts(model, spec, Path(tmp)),
            signature=served.signature(),
            input_example=(example, {"mode": served.DEFAULT_MODE}),
            pip_requirements=[f"{p}=={versions[p]}" if p in versions else p for p in REQUIRED_MODULES],
        )
    return register(run.client, info.model_uri, run.run_id, version_tags)
