"""The code MLflow runs to build a served mnist-codec model (models-from-code).

Logged with every codec in place of a pickled object. The model's logic is in
:mod:`mnist_codec.serving.model`; bad requests become MLflow's INVALID_PARAMETER_VALUE, which
the scoring server answers with HTTP 400 and the message.
"""

from typing import Any

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel
from mlflow.pyfunc.model import PythonModelContext


class CodecModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from mnist_codec.serving.model import load_codec

        self.codec, spec = load_codec(context.artifacts["spec"], context.artifacts["weights"])
        self.latent_dim = int(spec["latent_dim"])

    # np.ndarray: what the tensor signature (serving.signature) delivers; MLflow infers no
    # schema from this hint, so the declared signature stays the one that is enforced.
    def predict(
        self, context: PythonModelContext, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        from mlflow.exceptions import MlflowException

        from mnist_codec.serving.model import DEFAULT_MODE, BadInput, predict

        mode = (params or {}).get("mode", DEFAULT_MODE)
        try:
            return predict(self.codec, self.latent_dim, model_input, mode)
        except BadInput as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None


set_model(CodecModel())
