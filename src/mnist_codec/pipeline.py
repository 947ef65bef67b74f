"""One function per DVC stage: read inputs, call the library, log to MLflow, write outputs.

The scripts in ``stages/`` parse paths and params and call these. Every output is written
atomically, inside the MLflow run, so a failure leaves no output and a FAILED run.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import data, fileio, timing
from .params import Params

N_EXAMPLE_INPUT = 5  # rows in the MLflow input example
N_GRID = 8  # digits in the reconstruction grid logged with each training run
CHECKPOINT_DIR = ".checkpoints"  # beside the models; not a DVC output, removed when a stage completes
# The per-epoch eval_loss of the training curves is measured on at most this many evaluation
# images, evenly spaced (see curve_rows); a model's final eval MSE always on the whole split.
CURVE_IMAGES = 10_000


def _subset(params: Params, keys: list[str]) -> dict[str, Any]:
    """The params a stage uses, as a nested dict (what its MLflow runs record)."""
    full = params.to_dict()
    out: dict[str, Any] = {}
    for key in keys:
        section, _, sub = key.partition(".")
        if sub:
            out.setdefault(section, {})[sub] = full[section][sub]
        else:
            out[section] = full[section]
    return out


TRAIN_KEYS = ["seed", "n_seeds", "device", "latent_dim", "train", "data"]


# --- fetch, preprocess ---------------------------------------------------------------------

def run_fetch(params: Params, out_dir: Path) -> None:
    with timing.work("fetch"):
        hashes = data.fetch(params.data.source, out_dir)
    print(f"fetch: {len(hashes)} MNIST files from {params.data.source} verified into {out_dir}")


def run_preprocess(params: Params, raw_dir: Path, out_dir: Path) -> None:
    d = params.data
    with timing.work("preprocess"):
        meta = data.preprocess(raw_dir, out_dir, d.protocol, d.train_limit, d.eval_limit)
    n_train, n_eval = meta["splits"]["train"]["n"], meta["splits"]["eval"]["n"]
    print(f"preprocess: protocol {d.protocol}: {n_train} training and {n_eval} evaluation images in {out_dir}")


# --- training ------------------------------------------------------------------------------

@contextmanager
def _epoch_progress(names: list[str], epochs: int) -> Iterator:
    """A tqdm bar per model on a terminal; one plain line per epoch in logs (DVC, CI)."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    bars = {name: tqdm(total=epochs, desc=name, unit="epoch", position=k, disable=not interactive,
                       file=sys.stderr) for k, name in enumerate(names)}

    def report(name: str, r) -> None:
        if interactive:
            bars[name].set_postfix(train=f"{r.train_loss:.6f}", eval=f"{r.eval_loss:.6f}")
            bars[name].update(1)
        else:
            print(f"{name}: epoch {r.epoch}/{epochs} train_loss {r.train_loss:.6f} "
                  f"eval_loss {r.eval_loss:.6f} ({r.seconds:.1f} s)", file=sys.stderr, flush=True)

    try:
        yield report
    finally:
        for bar in bars.values():
            bar.close()


def curve_rows(n: int) -> slice:
    """The evaluation rows the training curves are measured on: all ``n`` when they are at
    most CURVE_IMAGES (the holdout protocol's 10,000 test images), else every k-th row, k
    the smallest stride that keeps at most CURVE_IMAGES (the notebook protocol's 70,000:
    every 7th, 10,000 images). The curve estimates what the training loss already tracks;
    measuring it on all 70,000 after every epoch cost a quarter of each epoch."""
    return slice(None, None, max(1, -(-n // CURVE_IMAGES)))


@dataclass(frozen=True)
class TrainingData:
    """A split loaded once per stage: tensors on the device, eval arrays for figures."""

    device: Any
    x: Any  # (N, 784) float32 tensor on device
    eval_x: Any  # (M, 784) float32 tensor on device
    eval_images: np.ndarray  # (M, 784) float32
    eval_labels: np.ndarray  # (M,) uint8
    sha256: str  # of the training split
    eval_sha256: str
    datasets: list  # [tracking.DatasetRef] of both splits


def datasets(data_dir: Path, meta: dict) -> list:
    """The training and evaluation splits as MLflow datasets: name, SHA-256 digest, source."""
    from .tracking import DatasetRef

    refs = []
    for split, context in (("train", "training"), ("eval", "evaluation")):
        sha = meta["splits"][split]["sha256"]
        source = (Path(data_dir) / f"{split}_x.npy").resolve().as_uri()
        refs.append(DatasetRef(f"mnist-{meta['protocol']}-{split}", sha[:32], source, context))
    return refs


def load_training_data(data_dir: Path, device_name: str) -> TrainingData:
    import torch

    from . import device as devices

    device = devices.resolve_device(device_name)
    (x, _), (ex, ey) = data.load_splits(data_dir)
    meta = data.read_meta(data_dir)
    tx = torch.from_numpy(x).to(device)
    return TrainingData(device, tx, tx if ex is x else torch.from_numpy(ex).to(device), ex, ey,
                        meta["splits"]["train"]["sha256"], meta["splits"]["eval"]["sha256"],
                        datasets(data_dir, meta))


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 of this package's source files, read once per process (they do not change in it)."""
    return fileio.tree_digest(Path(__file__).parent)


# Run tags a registered version carries too, so it can be traced back without its run.
VERSION_TAG_KEYS = ("mnist_codec.codec", "mnist_codec.seed", "mnist_codec.replicate", "mnist_codec.protocol",
                    "mnist_codec.data_sha256", "mnist_codec.git_commit", "mnist_codec.dvc_exp", "mnist_codec.host")


def _version_tags(run, spec: dict, eval_mse: float, eval_sha256: str, fingerprint_of: dict) -> dict[str, str]:
    """Registry tags of a codec trained in ``run``: its run's ties, code size, evaluation MSE,
    and a fingerprint of what made it (spec, params, seed, data, this package's code) that
    keeps a re-run with the same inputs from registering a duplicate."""
    import json

    from .tracking import FINGERPRINT_TAG

    fingerprint = fileio.sha256_bytes(json.dumps({**fingerprint_of, "spec": spec, "code": _code_digest()},
                                                 sort_keys=True).encode())
    tags = {k: run.tags[k] for k in VERSION_TAG_KEYS if k in run.tags}
    tags.update({"mnist_codec.latent_dim": str(spec["latent_dim"]), "mnist_codec.eval_mse": repr(eval_mse),
                 "mnist_codec.eval_sha256": eval_sha256, "mnist_codec.run_id": run.run_id,
                 FINGERPRINT_TAG: fingerprint})
    return tags


def _log_figures(run, name: str, model, curves: dict | None, ex: np.ndarray, ey: np.ndarray, n: int) -> None:
    from . import plots
    from .evaluate import reconstruct

    plots.pyplot()  # imported outside the timed work: a fixed cost
    with timing.work("figures"):  # drawing and rendering to PNG; the artifact writes are small
        if curves is not None:
            fig = plots.loss_curves({name: curves}, title=f"{name}: per-pixel MSE")
            run.log_figure(fig, "loss_curve.png")
            plots.close(fig)
        _, recon = reconstruct(model, ex[:n])
        fig = plots.reconstruction_grid(ex[:n], {name: recon}, ey[:n])
        run.log_figure(fig, "reconstructions.png")
        plots.close(fig)


def _curve_csv(history) -> str:
    lines = ["epoch,train_loss,eval_loss"]
    lines += [f"{r.epoch},{r.train_loss:.8f},{r.eval_loss:.8f}" for r in history]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CodecTarget:
    """One autoencoder a training stage builds, on every seed, and where its outputs go.

    ``model_dir`` gets ``seed<r>.pt`` and ``seed<r>.json`` per replicate r and an
    ``index.json``; ``curve_dir`` gets ``seed<r>.csv``.
    """

    name: str
    spec: dict
    log_params: dict
    model_dir: Path
    curve_dir: Path


@dataclass(frozen=True)
class _Member:
    """One (codec, seed) training: replicate number, its seed, its MLflow run's and its
    codec's parent run's indices."""

    target: CodecTarget
    replicate: int
    seed: int
    run: int
    parent: int


def _fingerprint(params: Params, target: CodecTarget, seed: int, data_sha256: str) -> str:
    """What a checkpoint must match to be resumed: the model, its training params, its data."""
    import json

    text = json.dumps({"spec": target.spec, "train": params.to_dict()["train"], "seed": seed,
                       "data": data_sha256}, sort_keys=True)
    return fileio.sha256_bytes(text.encode())


def _checkpoint_path(checkpoint_dir: Path, name: str, replicate: int) -> Path:
    return checkpoint_dir / f"{name}.seed{replicate}.ckpt"


def _remove_checkpoints(checkpoint_dir: Path, targets: list[CodecTarget], n_seeds: int) -> None:
    """Once a stage's outputs are in place its checkpoints are spent."""
    for target in targets:
        for r in range(n_seeds):
            _checkpoint_path(checkpoint_dir, target.name, r).unlink(missing_ok=True)
    try:
        checkpoint_dir.rmdir()
    except OSError:  # other stages' checkpoints are still there, or it never existed
        pass


def _train_codecs(params: Params, targets: list[CodecTarget], stage: str, td: TrainingData,
                  checkpoint_dir: Path) -> None:
    """Seed, build, train side by side, log and save the stage's autoencoders, every seed.

    Each codec is a parent MLflow run with one child run per seed, open while it trains;
    files are written last, inside the runs, so a failure leaves no model and FAILED (or
    KILLED) runs. Every epoch ends with a checkpoint per model in ``checkpoint_dir``
    (outside the stage's DVC outputs), from which an interrupted stage resumes when run
    again with the same params and data.
    """
    from . import device as devices
    from . import models, tracking, train
    from .seeding import replicate_seeds, seed_everything
    from .stats import summarize

    device, ex, ey, t = td.device, td.eval_images, td.eval_labels, params.train
    n_models = len(targets) * params.n_seeds
    device_name = devices.describe(device, n_models)
    jobs, specs, members = [], [], []
    parents: dict[str, int] = {}  # codec name -> index of its run
    for target in targets:
        tags = {"mnist_codec.codec": target.name, "mnist_codec.device": device_name,
                "mnist_codec.data_sha256": td.sha256, "mnist_codec.n_seeds": str(params.n_seeds)}
        parent = parents[target.name] = len(specs)
        specs.append(tracking.RunSpec(target.name, target.log_params, tags))
        for r, seed in enumerate(replicate_seeds(params.seed, target.name, params.n_seeds)):
            generator = seed_everything(seed)  # weights drawn now, data order from the generator
            checkpoint = train.Checkpoint(_checkpoint_path(checkpoint_dir, target.name, r),
                                          _fingerprint(params, target, seed, td.sha256))
            jobs.append(train.Job(f"{target.name}/seed{r}", models.build(target.spec).to(device), generator,
                                  checkpoint=checkpoint))
            specs.append(tracking.RunSpec(f"{target.name} seed{r}",
                                          {**target.log_params, "model_seed": seed, "replicate": r},
                                          {**tags, "mnist_codec.seed": str(seed), "mnist_codec.replicate": str(r)},
                                          parent=parent))
            members.append(_Member(target, r, seed, len(specs) - 1, parent))
    with tracking.start_runs(specs, stage, params.to_dict()) as runs, \
            _epoch_progress([j.name for j in jobs], t.epochs) as progress:
        for run in runs:
            run.log_inputs(td.datasets)
        for job, member in zip(jobs, members):
            def on_epoch(r, job=job, run=runs[member.run]) -> None:
                run.log_epoch(r.epoch, r.train_loss, r.eval_loss)
                progress(job.name, r)
            job.on_epoch = on_epoch
        start = time.perf_counter()
        curve_x = td.eval_x[curve_rows(len(td.eval_x))].contiguous()
        whole = len(curve_x) == len(td.eval_x)
        with timing.work("training"):
            histories = train.fit_many(jobs, td.x, curve_x, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                                       schedule=t.schedule, weight_decay=t.weight_decay)
        seconds = time.perf_counter() - start  # models trained side by side share this wall time
        with timing.work("scoring"):  # the last curve point is the final MSE where it used the whole split
            eval_mse = [h[-1].eval_loss if whole else train.reconstruction_mse(j.model, td.eval_x)
                        for j, h in zip(jobs, histories)]
        finals: dict[str, list[float]] = {name: [] for name in parents}
        for member, job, history, final_eval in zip(members, jobs, histories, eval_mse):
            target, run, model, final = member.target, runs[member.run], job.model.cpu(), history[-1]
            run.log_metrics({"final_train_loss": final.train_loss, "eval_mse": final_eval,
                             "train_seconds": seconds})
            curves = {"epoch": [r.epoch for r in history], "train_loss": [r.train_loss for r in history],
                      "eval_loss": [r.eval_loss for r in history]}
            _log_figures(run, job.name, model, curves, ex, ey, N_GRID)
            reg = run.log_model(model, target.spec, ex[:N_EXAMPLE_INPUT], _version_tags(
                run, target.spec, final_eval, td.eval_sha256,
                {"train": params.to_dict()["train"], "seed": member.seed, "data": td.sha256}))
            record = {"codec": target.name, "spec": target.spec, "mlflow_run_id": run.run_id,
                      "mlflow_parent_run_id": runs[member.parent].run_id,
                      "registered_model": reg.name, "model_version": reg.version,
                      "replicate": member.replicate, "seed": member.seed, "device": device_name,
                      "epochs": t.epochs, "train_seconds": round(seconds, 3),
                      "trained_with": [j.name for j in jobs],
                      "final_train_loss": final.train_loss, "final_eval_loss": final_eval,
                      "curve_eval_images": len(curve_x)}
            models.save(model, target.spec, target.model_dir / f"seed{member.replicate}.pt")
            fileio.write_json(target.model_dir / f"seed{member.replicate}.json", record)
            fileio.write_text(target.curve_dir / f"seed{member.replicate}.csv", _curve_csv(history))
            finals[target.name].append(final_eval)
        for target in targets:
            parent = runs[parents[target.name]]
            s = summarize(finals[target.name])
            parent.log_metrics({"eval_mse_mean": s["mean"], "eval_mse_std": s["std"],
                                "eval_mse_ci95_low": s["ci95_low"], "eval_mse_ci95_high": s["ci95_high"],
                                "train_seconds": seconds})
            fileio.write_json(target.model_dir / "index.json", {
                "codec": target.name, "n_seeds": params.n_seeds, "mlflow_run_id": parent.run_id,
                "seeds": [m.seed for m in members if m.target is target]})


def run_train_ae(params: Params, data_dir: Path, out_dir: Path, curves_dir: Path) -> None:
    """Train the one-layer AE on every seed, side by side."""
    td = load_training_data(data_dir, params.device)
    checkpoints = out_dir.parent / CHECKPOINT_DIR
    with fileio.atomic_dir(out_dir) as tmp_models, fileio.atomic_dir(curves_dir) as tmp_curves:
        target = CodecTarget("ae", {"kind": "ae", "latent_dim": params.latent_dim}, _subset(params, TRAIN_KEYS),
                             tmp_models, tmp_curves)
        _train_codecs(params, [target], "train_ae", td, checkpoints)
    _remove_checkpoints(checkpoints, [target], params.n_seeds)


def deep_spec(params: Params, activation: str) -> tuple[str, dict]:
    """(codec name, spec) of the deep stage's codec with ``activation``: the MLP
    (``deep_<act>``, widths ``deep.hidden``) or the convolutional AE (``conv_<act>``,
    ``deep.channels``), as ``deep.arch`` says."""
    d = params.deep
    if d.arch == "conv":
        return f"conv_{activation}", {"kind": "conv", "latent_dim": params.latent_dim,
                                      "channels": list(d.channels), "activation": activation}
    return f"deep_{activation}", {"kind": "deep", "latent_dim": params.latent_dim, "hidden": list(d.hidden),
                                  "activation": activation}


def run_train_deep(params: Params, data_dir: Path, out_dir: Path, curves_dir: Path) -> None:
    """Train one deep codec (``deep.arch``) per requested activation on every seed, all side by side."""
    td = load_training_data(data_dir, params.device)
    checkpoints = out_dir.parent / CHECKPOINT_DIR
    with fileio.atomic_dir(out_dir) as tmp_models, fileio.atomic_dir(curves_dir) as tmp_curves:
        targets = []
        for act in params.activation:
            name, spec = deep_spec(params, act)
            log_params = {**_subset(params, TRAIN_KEYS + ["deep"]), "activation": act}
            targets.append(CodecTarget(name, spec, log_params, tmp_models / name, tmp_curves / name))
        _train_codecs(params, targets, "train_deep", td, checkpoints)
        fileio.write_json(tmp_models / "index.json", {"codecs": [t.name for t in targets]})
    _remove_checkpoints(checkpoints, targets, params.n_seeds)


# --- pca -----------------------------------------------------------------------------------

def run_pca(params: Params, data_dir: Path, npz_path: Path, record_path: Path) -> None:
    from . import models, pca, tracking
    from .train import reconstruction_mse

    import torch

    (x, _), (ex, ey) = data.load_splits(data_dir)
    meta = data.read_meta(data_dir)
    train_sha, eval_sha = meta["splits"]["train"]["sha256"], meta["splits"]["eval"]["sha256"]
    tags = {"mnist_codec.codec": "pca", "mnist_codec.device": "cpu:scikit-learn", "mnist_codec.data_sha256": train_sha}
    log_params = _subset(params, ["latent_dim", "data"])
    spec = {"kind": "pca", "latent_dim": params.latent_dim}
    with tracking.start_run("pca", "pca", log_params, tags, params.to_dict()) as run:
        run.log_inputs(datasets(data_dir, meta))
        start = time.perf_counter()
        with timing.work("fit"):
            arrays = pca.fit(x, params.latent_dim)
        seconds = time.perf_counter() - start
        explained = float(arrays["explained_variance_ratio"].sum())
        codec = models.pca_codec_from_arrays(arrays["mean"], arrays["components"])
        with timing.work("scoring"):
            train_mse = reconstruction_mse(codec, torch.from_numpy(x))
            eval_mse = train_mse if ex is x else reconstruction_mse(codec, torch.from_numpy(ex))
        run.log_epoch(1, train_mse, eval_mse)
        run.log_metrics({"final_train_loss": train_mse, "eval_mse": eval_mse, "train_seconds": seconds,
                         "explained_variance": explained})
        _log_figures(run, "pca", codec, None, ex, ey, N_GRID)
        reg = run.log_model(codec, spec, ex[:N_EXAMPLE_INPUT],
                            _version_tags(run, spec, eval_mse, eval_sha, {"data": train_sha}))
        pca.save(arrays, npz_path)
        fileio.write_json(record_path, {
            "codec": "pca", "spec": spec, "mlflow_run_id": run.run_id,
            "registered_model": reg.name, "model_version": reg.version,
            "device": "cpu:scikit-learn", "train_seconds": round(seconds, 3),
            "final_train_loss": train_mse, "final_eval_loss": eval_mse,
            "explained_variance": explained,
        })
    print(f"pca: {params.latent_dim} components, train MSE {train_mse:.6f}, eval MSE {eval_mse:.6f}")


# --- evaluate ------------------------------------------------------------------------------

def _read_record(path: Path) -> dict:
    """A JSON record a training stage wrote; missing or unreadable is a DataError naming it."""
    from .errors import DataError

    try:
        return fileio.read_json(path)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (run the stage that writes it)") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def _load_seeds(model_dir: Path) -> tuple[list[tuple[Any, dict]], dict]:
    """A codec folder written by a training stage: [(model, record) per seed], its index."""
    from . import models

    from .errors import DataError

    index = _read_record(model_dir / "index.json")
    out = []
    for r in range(int(index["n_seeds"])):
        path = model_dir / f"seed{r}.pt"
        if not path.exists():
            raise DataError(f"{model_dir}: index.json lists {index['n_seeds']} seeds but {path.name} is missing")
        model, _ = models.load(path)
        out.append((model, _read_record(path.with_suffix(".json"))))
    return out, index


def load_codecs(pca_path: Path, ae_dir: Path, deep_dir: Path) -> dict[str, tuple[list[tuple[Any, dict]], str]]:
    """name -> ([(codec module, training record) per seed], the codec's MLflow run id), in
    table order: PCA (one, deterministic), the AE, a deep codec per activation."""
    from . import pca

    codec = pca.load(pca_path)
    record = _read_record(pca_path.with_suffix(".json"))
    codecs = {"pca": ([(codec, record)], record["mlflow_run_id"])}
    seeds, index = _load_seeds(ae_dir)
    codecs["ae"] = (seeds, index["mlflow_run_id"])
    from .errors import DataError

    deep = _read_record(deep_dir / "index.json")
    if "codecs" not in deep:
        raise DataError(f"{deep_dir / 'index.json'}: lists no codecs; re-run the train_deep stage")
    for name in deep["codecs"]:
        seeds, index = _load_seeds(deep_dir / name)
        codecs[name] = (seeds, index["mlflow_run_id"])
    return codecs


def _update_registry(run, metrics: dict, codecs: dict, eval_sha256: str, protocol: str):
    """Tag every evaluated version with its evaluation, then apply the promotion rule
    (:mod:`mnist_codec.promotion`) to this run's best codec. Returns the decision."""
    from . import promotion, tracking
    from .errors import DataError

    client = tracking.registry_client()
    current = tracking.champion(client)  # read before this evaluation re-tags any version
    tags_by_version, standings = {}, {}
    for name, (seeds, _) in codecs.items():
        m = metrics[name]["mse"]
        for r, (_, record) in enumerate(seeds):
            version = record.get("model_version")
            if version is None:
                raise DataError(f"{name} seed {r}: its record names no registered model version; "
                                f"re-run the stage that trained it")
            standing = promotion.Standing(version, name, m["mean"], m["ci95_low"], m["ci95_high"], m["n"],
                                          eval_sha256)
            tags_by_version[version] = {**standing.tags(), "mnist_codec.eval_mse": repr(m["per_seed"][r])}
            if r == promotion.median_seed(m["per_seed"]):
                standings[name] = standing
    best = promotion.best_codec({name: metrics[name]["mse"]["mean"] for name in codecs})
    candidate = standings[best]
    best_seeds, _ = codecs[best]
    _, record = best_seeds[0]
    why_not = promotion.ineligible(protocol, int(record["spec"]["latent_dim"]))
    if why_not:
        decision = promotion.Decision(False, f"{candidate.describe()}: {why_not}")
    else:
        champion = promotion.Standing.from_tags(*current) if current else None
        decision = promotion.decide(candidate, champion, current[0] if current else None)
    verdict = ("promoted: " if decision.promote else "not promoted: ") + decision.reason
    tags_by_version[candidate.version]["mnist_codec.promotion"] = verdict
    tracking.tag_versions(client, tags_by_version)
    if decision.promote:
        tracking.set_champion(client, candidate.version)
    run.set_tags({"mnist_codec.champion.candidate": f"{tracking.REGISTERED_MODEL}/{candidate.version}",
                  "mnist_codec.champion.promoted": str(decision.promote).lower(),
                  "mnist_codec.champion.reason": decision.reason})
    return decision


def run_evaluate(params: Params, data_dir: Path, pca_path: Path, ae_dir: Path, deep_dir: Path,
                 metrics_path: Path, table_md: Path, table_csv: Path, timings_path: Path,
                 samples_path: Path) -> None:
    """Every model of every codec on the evaluation split; per codec, summaries over its seeds."""
    from . import evaluate, tracking

    start = time.perf_counter()
    ex, ey = data.load_split(data_dir, "eval")
    meta = data.read_meta(data_dir)
    protocol = meta["protocol"]
    codecs = load_codecs(pca_path, ae_dir, deep_dir)
    n_show, n_proj = params.evaluate.n_examples, min(params.evaluate.n_projection, len(ex))
    metrics, samples = {}, {"originals": ex[:n_show], "labels": ey[:n_show], "proj_labels": ey[:n_proj]}
    for name, (seeds, _) in codecs.items():
        per_seed = []
        for r, (model, _) in enumerate(seeds):
            with timing.work("scoring"):
                m, codes = evaluate.codec_metrics(model, ex, ey)
            per_seed.append(m)
            if r == 0:  # figures show the first seed's model
                with timing.work("figure data"):
                    _, samples[f"recon_{name}"] = evaluate.reconstruct(model, ex[:n_show])
                    samples[f"proj_{name}"] = evaluate.project_2d(codes[:n_proj])
                if name == "pca":
                    samples["pca_2d"] = codes[:n_proj, :2]  # the images' first two principal components
        metrics[name] = evaluate.aggregate(per_seed)
    rows = evaluate.comparison_rows(metrics, protocol)
    markdown = evaluate.rows_to_markdown(rows, protocol, len(ex))
    table = evaluate.rows_to_csv(rows)
    tags = {"mnist_codec.data_sha256": meta["splits"]["eval"]["sha256"]}
    tags.update({f"mnist_codec.run.{name}": run_id for name, (_, run_id) in codecs.items()})
    logged = {f"{name}.{k}_{stat}": m[k][stat] for name, m in metrics.items() for k in ("mse", "psnr")
              for stat in ("mean", "std", "ci95_low", "ci95_high")}
    with tracking.start_run("evaluate", "evaluate", _subset(params, ["evaluate", "data"]), tags,
                            params.to_dict()) as run:
        run.log_metrics(logged)
        run.log_text(markdown, "comparison.md")
        run.log_text(table, "comparison.csv")
        decision = _update_registry(run, metrics, codecs, meta["splits"]["eval"]["sha256"], protocol)
        fileio.write_json(metrics_path, metrics)
        fileio.write_text(table_md, markdown)
        fileio.write_text(table_csv, table)
        fileio.write_npz(samples_path, samples)
        first = {name: seeds[0][1] for name, (seeds, _) in codecs.items()}
        timings = {"train_seconds": {name: rec.get("train_seconds") for name, rec in first.items()},
                   "train_device": {name: rec.get("device") for name, rec in first.items()},
                   "evaluate_seconds": round(time.perf_counter() - start, 3)}
        fileio.write_json(timings_path, timings)
    print(markdown)
    print(f"champion: {'promoted' if decision.promote else 'kept'}: {decision.reason}")


# --- report --------------------------------------------------------------------------------

def run_report(metrics_path: Path, table_csv: Path, curves_dir: Path, samples_path: Path,
               figures_dir: Path, html_path: Path, rate_distortion: Path | None = None) -> None:
    from . import plots, report

    plots.pyplot()  # imported outside the timed work: a fixed cost
    with timing.work("figures"):
        report.build(metrics_path, table_csv, curves_dir, samples_path, figures_dir, html_path, rate_distortion)
    print(f"report: {html_path} and figures in {figures_dir}")
