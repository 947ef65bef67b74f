"""The search: Ray Tune runs the trials, Optuna's TPE sampler proposes them, ASHA stops weak ones.

``mnist-codec tune`` (``make tune``) reads ``tune.yaml`` (:mod:`.space`), opens the Optuna study
(``--storage``, an SQLAlchemy URL: by default ``sqlite:///.tune/optuna.db``; the team's
PostgreSQL lets a second machine resume or join the same study), and runs what the study has
left of its budget (trials and seconds of search, :func:`this_run_budget`) on a local Ray (every
process on 127.0.0.1) or on a cluster (``--cluster``; the package travels to the nodes with
``py_modules``):

* OptunaSearch asks the study for each trial's settings with a define-by-run space; TPE is
  seeded with ``seed`` plus the trials already in the study, so a resumed study goes on with
  new proposals, not the first run's again. A new study first runs the file's ``start_from``
  points;
* every trial (:mod:`.trial`) reports its validation MSE after each epoch, and ASHA (epochs as
  its budget, ``grace_epochs``, ``reduction_factor``) stops those in the bottom of their rung;
  the scheduler below records which it stopped and at which epoch;
* every trial is an MLflow run, a child of one tuning run per study (found again on resume);
  a trial ASHA stopped is ended KILLED with the epoch, one the time budget cut KILLED too;
* each Optuna trial keeps its MLflow run, its Ray trial and how it ended as user attributes,
  and the study keeps every search run's record (wall time, where, device, precision), so the
  proof (:mod:`.proof`) can state the whole search.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..loopback import keep_ray_on_loopback
from . import records
from .space import Spec
from .study import DEFAULT_STORAGE_DIR, RUNS_ATTR, TuneError, default_storage, finished, open_study, tuning_run
from .trial import VAL_METRIC, Context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Where:
    """A local Ray (``address`` None) or a cluster's address."""

    address: str | None = None

    @property
    def name(self) -> str:
        return "local" if self.address is None else f"cluster {self.address}"


def start_ray(where: Where, cpus: float | None) -> None:
    import ray

    import mnist_codec

    if where.address is None:
        keep_ray_on_loopback()  # a local search stays on 127.0.0.1
        ray.init(
            address="local",
            num_cpus=int(cpus) if cpus else None,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    else:
        try:
            ray.init(
                address=where.address,
                logging_level=logging.WARNING,
                log_to_driver=False,
                runtime_env={"py_modules": [str(Path(mnist_codec.__file__).parent)]},
            )
        except Exception as exc:
            raise TuneError(
                f"tune: the Ray cluster at {where.address} did not take the connection: {str(exc).splitlines()[0]}"
            ) from None


def _trainable(ctx: Context) -> Callable[[dict], None]:
    """The function Ray Tune runs per trial: :func:`.trial.run` with Ray's report and node."""

    def trainable(config: dict) -> None:
        import ray
        from ray import tune

        from . import trial

        node = ray.get_runtime_context().get_node_id()
        context = Context(
            **{**ctx.__dict__, "node": node, "host": socket.gethostname(), "node_ip": ray.util.get_node_ip_address()}
        )
        trial_id = tune.get_context().get_trial_id()

        def report(metrics: dict) -> None:
            tune.report({**metrics, "node_id": node})

        trial.run(config, context, report, trial_id)

    return trainable


def this_run_budget(spec: Spec, done: int, spent: float, trials: int | None, time_s: float | None) -> tuple[int, float]:
    """(trials, seconds) this search may take. By default what the study has left of the file's
    budget (``budget.trials`` trials, ``budget.time_s`` seconds of search, over every run that
    resumed it): a spent study goes straight to the proof. ``--trials`` and ``--time-s`` set
    this run's own budget; ``--trials`` alone takes at most ``budget.time_s``."""
    if time_s is None:
        if trials is None:
            return spec.trials - done, spec.time_s - spent
        return trials, spec.time_s
    return (trials if trials is not None else spec.trials - done), time_s


def run(
    root: Path,
    spec: Spec,
    base: dict,
    storage: str | None = None,
    where: Where = Where(),
    trials: int | None = None,
    time_s: float | None = None,
) -> dict:
    """Run the search; return this run's record (also appended to the study's ``search_runs``)."""
    if where.address is None:  # read when ray is imported: a local Ray keeps every node on 127.0.0.1
        keep_ray_on_loopback()
        from ..codecs import device as devices

        # bf16 on a machine without it is refused once, here, not by every trial
        devices.check_precision(devices.resolve_device(str(base.get("device", "auto"))), spec.precision)
    import optuna
    from mlflow import MlflowClient
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from ..tracking import store
    from .proposals import encode, suggest

    storage = storage or default_storage(root)
    study = open_study(storage, spec.study)
    before = len(finished(study))
    spent = sum(r.get("wall_seconds", 0) for r in study.user_attrs.get(RUNS_ATTR, []))
    budget_trials, budget_time = this_run_budget(spec, before, spent, trials, time_s)
    if budget_trials <= 0 or budget_time <= 0:  # nothing to search: the study and the store stay as they are
        log.info(
            "tune: study %r has spent its budget (%d of %d trials, %.0f of %.0f s of search); "
            "--trials N and --time-s S search more",
            spec.study,
            before,
            spec.trials,
            spent,
            spec.time_s,
        )
        return {"trials_this_run": 0, "skipped": True}
    uri = store.tracking_uri(root)
    client = MlflowClient(uri)
    with store.store_lock(uri, root):
        experiment_id = store.experiment_id(client, root)
    parent = tuning_run(client, experiment_id, study, spec, storage)
    client.update_run(parent, status="RUNNING")
    ctx = Context(spec, base, uri, experiment_id, parent)
    points = [encode(p) for p in spec.start_from] if not study.trials else None
    sampler = optuna.samplers.TPESampler(seed=spec.seed + len(study.trials))
    searcher = OptunaSearch(
        space=suggest(spec),
        metric=VAL_METRIC,
        mode="min",
        points_to_evaluate=points,
        sampler=sampler,
        study_name=spec.study,
        storage=optuna.storages.RDBStorage(storage),
    )
    stopped: dict[str, int] = {}  # Ray trial -> the epoch ASHA stopped it at
    run_of: dict[str, str] = {}  # Ray trial -> its MLflow run
    scheduler = records.asha_recorder(spec, searcher, stopped)
    ends = records.mlflow_callback(client, searcher, stopped, run_of, spec.max_epochs)
    start_ray(where, None)
    started = time.time()
    try:
        tuner = tune.Tuner(
            tune.with_resources(_trainable(ctx), {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=budget_trials,
                time_budget_s=budget_time,
                metric=VAL_METRIC,
                mode="min",
                max_concurrent_trials=None,
            ),
            run_config=tune.RunConfig(
                name=f"{spec.study}-{int(started)}",
                storage_path=str((root / DEFAULT_STORAGE_DIR / "ray").resolve()),
                callbacks=[ends],
                verbose=1,
                log_to_file=True,
            ),
        )
        grid = tuner.fit()
    except BaseException:  # Ctrl-C or an error of the search itself: its tuning run says so
        client.set_terminated(parent, "KILLED")
        raise
    finally:
        import ray

        ray.shutdown()
    wall = time.time() - started
    records.end_cut_runs(client, run_of)
    study = open_study(storage, spec.study)
    record = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "where": where.name,
        **records.search_record(study, set(run_of.values()), spec, budget_time, wall, before, grid.num_errors),
    }
    study.set_user_attr(RUNS_ATTR, [*study.user_attrs.get(RUNS_ATTR, []), record])
    records.log_study(client, parent, study, spec.max_epochs)
    client.set_terminated(parent, "FINISHED")
    log.info(
        "tune: %d trials this run (%d ran every epoch, %d stopped by ASHA, %d cut by the time budget, "
        "%d failed) in %.0f s; the study has %d",
        record["trials_this_run"],
        record["completed"],
        record["asha_stopped"],
        record["cut_by_time"],
        record["failed"],
        wall,
        len(finished(study)),
    )
    return record
