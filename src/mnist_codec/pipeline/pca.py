"""Stage pca: PCA with ``latent_dim`` components fitted on the training split, scored, logged."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .. import fileio, timing
from ..codecs import models, pca
from ..data import splits
from ..params import Params

log = logging.getLogger(__name__)
DEVICE = "cpu:scikit-learn"


def run(params: Params, data_dir: Path, npz_path: Path, record_path: Path) -> None:
    import torch

    from ..serving.packaging import log_model
    from ..tracking import runs as tracking
    from ..tracking.figures import log_figures
    from ..tracking.fingerprint import version_tags

    (x, _), (ex, ey) = splits.load_splits(data_dir)
    meta = splits.read_meta(data_dir)
    train_sha, eval_sha = meta["splits"]["train"]["sha256"], meta["splits"]["eval"]["sha256"]
    tags = {"mnist_codec.codec": "pca", "mnist_codec.device": DEVICE, "mnist_codec.data_sha256": train_sha}
    log_params = tracking.params_subset(params.to_dict(), ["latent_dim", "data"])
    spec = {"kind": "pca", "latent_dim": params.latent_dim}
    with tracking.start_run("pca", "pca", log_params, tags, params.to_dict()) as run:
        run.log_inputs(tracking.split_datasets(data_dir, meta))
        start = time.perf_counter()
        with timing.work("fit"):
            arrays = pca.fit(x, params.latent_dim)
        seconds = time.perf_counter() - start
        explained = float(arrays["explained_variance_ratio"].sum())
        codec = models.pca_codec_from_arrays(arrays["mean"], arrays["components"])
        with timing.work("scoring"):
            train_mse = models.reconstruction_mse(codec, torch.from_numpy(x))
            eval_mse = train_mse if ex is x else models.reconstruction_mse(codec, torch.from_numpy(ex))
        run.log_epoch(1, train_mse, eval_mse)
        run.log_metrics(
            {
                "final_train_loss": train_mse,
                "eval_mse": eval_mse,
                "train_seconds": seconds,
                "explained_variance": explained,
            }
        )
        log_figures(run, "pca", {"pca": codec}, None, ex, ey)
        reg = log_model(
            run,
            codec,
            spec,
            ex[: tracking.EXAMPLE_ROWS],
            version_tags(run, spec, eval_mse, eval_sha, {"data": train_sha}),
        )
        pca.save(arrays, npz_path)
        fileio.write_json(
            record_path,
            {
                "codec": "pca",
                "spec": spec,
                "mlflow_run_id": run.run_id,
                "registered_model": reg.name,
                "model_version": reg.version,
                "device": DEVICE,
                "train_seconds": round(seconds, 3),
                "final_train_loss": train_mse,
                "final_eval_loss": eval_mse,
                "explained_variance": explained,
                "made_of": {"data": train_sha},
            },
        )
    log.info("pca: %d components, train MSE %.6f, eval MSE %.6f", params.latent_dim, train_mse, eval_mse)
