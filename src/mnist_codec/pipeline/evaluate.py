"""Stage evaluate: every model of every codec on the evaluation split; per codec, summaries over
its seeds; the comparison table; the registry's champion moved by the promotion rule."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import fileio, timing
from ..codecs import models, pca
from ..data import splits
from ..errors import DataError
from ..evaluation import metrics as scoring
from ..evaluation import promotion, table
from ..evaluation.digest import digest
from ..params import Params

if TYPE_CHECKING:
    from ..tracking.runs import Run


log = logging.getLogger(__name__)


def read_record(path: Path) -> dict:
    """A JSON record a training stage wrote; missing or unreadable is a DataError naming it."""
    try:
        return fileio.read_json(path)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (run the stage that writes it)") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def load_seeds(model_dir: Path) -> tuple[list[tuple[Any, dict]], dict]:
    """A codec folder written by a training stage: [(model, record) per seed], its index."""
    index = read_record(model_dir / "index.json")
    out = []
    for r in range(int(index["n_seeds"])):
        path = model_dir / f"seed{r}.pt"
        if not path.exists():
            raise DataError(f"{model_dir}: index.json lists {index['n_seeds']} seeds but {path.name} is missing")
        model, _ = models.load(path)
        out.append((model, read_record(path.with_suffix(".json"))))
    return out, index


def load_codecs(pca_path: Path, ae_dir: Path, deep_dir: Path) -> dict[str, tuple[list[tuple[Any, dict]], str]]:
    """name -> ([(codec module, training record) per seed], the codec's MLflow run id), in
    table order: PCA (one, deterministic), the AE, a deep codec per activation."""
    codec = pca.load(pca_path)
    record = read_record(pca_path.with_suffix(".json"))
    codecs = {"pca": ([(codec, record)], record["mlflow_run_id"])}
    seeds, index = load_seeds(ae_dir)
    codecs["ae"] = (seeds, index["mlflow_run_id"])
    deep = read_record(deep_dir / "index.json")
    if "codecs" not in deep:
        raise DataError(f"{deep_dir / 'index.json'}: lists no codecs; re-run the train_deep stage")
    for name in deep["codecs"]:
        seeds, index = load_seeds(deep_dir / name)
        codecs[name] = (seeds, index["mlflow_run_id"])
    return codecs


def update_registry(run: Run, metrics: dict, codecs: dict, eval_sha256: str, protocol: str) -> promotion.Decision:
    """Tag every evaluated version with its evaluation, then apply the promotion rule
    (:mod:`mnist_codec.evaluation.promotion`) to this run's best codec. Returns the decision."""
    from ..tracking import registry

    client = registry.registry_client()
    current = registry.champion(client)  # read before this evaluation re-tags any version
    tags_by_version, standings = {}, {}
    for name, (seeds, _) in codecs.items():
        m = metrics[name]["mse"]
        for r, (_, record) in enumerate(seeds):
            version = record.get("model_version")
            if version is None:
                raise DataError(
                    f"{name} seed {r}: its record names no registered model version; re-run the stage that trained it"
                )
            standing = promotion.Standing(version, name, m["mean"], m["ci95_low"], m["ci95_high"], m["n"], eval_sha256)
            tags_by_version[version] = {**standing.tags(), "mnist_codec.eval_mse": repr(m["per_seed"][r])}
            if r == promotion.median_seed(m["per_seed"]):
                standings[name] = standing
    best = promotion.lowest_mean({name: metrics[name]["mse"]["mean"] for name in codecs})
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
    registry.tag_versions(client, tags_by_version)
    if decision.promote:
        registry.set_champion(client, candidate.version)
    run.set_tags(
        {
            "mnist_codec.champion.candidate": f"{registry.REGISTERED_MODEL}/{candidate.version}",
            "mnist_codec.champion.promoted": str(decision.promote).lower(),
            "mnist_codec.champion.reason": decision.reason,
        }
    )
    return decision


def run(
    params: Params,
    data_dir: Path,
    pca_path: Path,
    ae_dir: Path,
    deep_dir: Path,
    metrics_path: Path,
    detail_path: Path,
    table_md: Path,
    table_csv: Path,
    timings_path: Path,
    samples_path: Path,
) -> None:
    """Every model of every codec on the evaluation split; per codec, summaries over its seeds
    (the detail file) and the headline numbers a person compares (metrics.json)."""
    from ..tracking import runs as tracking

    start = time.perf_counter()
    ex, ey = splits.load_split(data_dir, "eval")
    meta = splits.read_meta(data_dir)
    protocol, eval_sha256 = meta["protocol"], meta["splits"]["eval"]["sha256"]
    codecs = load_codecs(pca_path, ae_dir, deep_dir)
    n_show, n_proj = params.evaluate.n_examples, min(params.evaluate.n_projection, len(ex))
    metrics, samples = {}, {"originals": ex[:n_show], "labels": ey[:n_show], "proj_labels": ey[:n_proj]}
    for name, (seeds, _) in codecs.items():
        per_seed = []
        for r, (model, _) in enumerate(seeds):
            with timing.work("scoring"):
                m, codes = scoring.codec_metrics(model, ex, ey)
            per_seed.append(m)
            if r == 0:  # figures show the first seed's model
                with timing.work("figure data"):
                    _, samples[f"recon_{name}"] = scoring.reconstruct(model, ex[:n_show])
                    samples[f"proj_{name}"] = scoring.project_2d(codes[:n_proj])
                if name == "pca":
                    samples["pca_2d"] = codes[:n_proj, :2]  # the images' first two principal components
        metrics[name] = scoring.aggregate(per_seed, [record for _, record in seeds], eval_sha256)
    headline = scoring.headline(metrics)
    frame = table.comparison_table(metrics, protocol)
    markdown = table.to_markdown(frame, protocol, len(ex))
    csv_text = table.to_csv(frame)
    tags = {"mnist_codec.data_sha256": eval_sha256}
    tags.update({f"mnist_codec.run.{name}": run_id for name, (_, run_id) in codecs.items()})
    with tracking.start_run(
        "evaluate", "evaluate", tracking.params_subset(params.to_dict(), ["evaluate", "data"]), tags, params.to_dict()
    ) as run:
        # The summary is a table artifact, not metrics: the Chart view opens on the codecs'
        # training runs, each of which carries its own headline numbers (mse, mse_ci95, psnr).
        run.log_table(frame, "comparison.json")
        run.log_text(markdown, "comparison.md")
        for name, (_, run_id) in codecs.items():
            numbers = {k: v for k, v in headline[name].items() if k != "n_seeds"}
            run.sibling(run_id).log_metrics(numbers)
        decision = update_registry(run, metrics, codecs, eval_sha256, protocol)
        run.set_tags({"mnist_codec.results": digest(metrics)})  # how the gate finds the run that made them
        fileio.write_json(detail_path, metrics)
        fileio.write_json(metrics_path, headline)
        fileio.write_text(table_md, markdown)
        fileio.write_text(table_csv, csv_text)
        fileio.write_npz(samples_path, samples)
        first = {name: seeds[0][1] for name, (seeds, _) in codecs.items()}
        timings = {
            "train_seconds": {name: rec.get("train_seconds") for name, rec in first.items()},
            "train_device": {name: rec.get("device") for name, rec in first.items()},
            "evaluate_seconds": round(time.perf_counter() - start, 3),
        }
        fileio.write_json(timings_path, timings)
    log.info("%s", markdown)
    log.info("champion: %s: %s", "promoted" if decision.promote else "kept", decision.reason)
