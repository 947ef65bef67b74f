"""``mnist-codec sweep``, ``sweep-report``, ``frontier``, ``tune`` and ``protocol-table``: the
experiments beyond the pipeline (the rate-distortion sweep on a Ray cluster, the strongest codec
on the test images, the tuned search, the table under another protocol)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..params import PRECISIONS
from ..params import read as read_params
from .options import overrides, set_param


def add(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("sweep-report", help="the rate-distortion figure and table from the rd-<k> experiments")
    r.add_argument("--wait", action="store_true", help="first wait until DVC's queue is empty")
    r.add_argument("--exp-json", default=None, help="a JSON file of dvc.api.exp_show rows (default: read them)")
    _report_paths(r)
    r.set_defaults(func=_sweep_report)
    w = sub.add_parser(
        "sweep",
        help="the rate-distortion sweep on a Ray cluster: each code size a DVC experiment run "
        "on a node and pushed to origin, then reports/rate_distortion.*",
    )
    w.add_argument("--cluster", default=None, help="the Ray cluster's address, HOST:PORT (default: $RAY_ADDRESS)")
    w.add_argument("--sizes", type=int, nargs="+", default=None, help="code sizes (default: the sweep's 2 4 ... 128)")
    set_param(w, "added to every experiment")
    w.add_argument("--cpus", type=float, default=1, help="CPUs each experiment declares to Ray (default 1)")
    w.add_argument("--gpus", type=float, default=0, help="GPUs each experiment declares to Ray (default 0)")
    w.add_argument(
        "--retries", type=int, default=None, help="runs again on another node when its node dies (default 2)"
    )
    w.add_argument("--force", action="store_true", help="run again the experiments already on origin for this commit")
    w.add_argument("--tracking-uri", default=None, help="the team's tracking server (default: $MLFLOW_TRACKING_URI)")
    _report_paths(w)
    w.add_argument("--json", default=None, help="also write each experiment's node, host and seconds per step here")
    w.set_defaults(func=_sweep)
    f = sub.add_parser(
        "frontier",
        help="choose the strongest codec on the validation split, measure it on the "
        "test images, write reports/frontier.json",
    )
    f.add_argument("--out", default="reports/frontier.json")
    set_param(f, "added to every run", example="train.epochs=2")
    f.set_defaults(func=_frontier)

    n = sub.add_parser(
        "tune",
        help="search tune.yaml's space (Ray Tune, Optuna TPE, ASHA) on the validation split, "
        "then run the best on the test images: reports/frontier.json",
    )
    n.add_argument("--spec", default="tune.yaml", help="the search space and budget (default: tune.yaml)")
    n.add_argument(
        "--storage",
        default=None,
        help="the Optuna study's SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db "
        "(default: sqlite:///.tune/optuna.db)",
    )
    n.add_argument("--cluster", default=None, help="a Ray cluster's address, HOST:PORT (default: a local Ray)")
    n.add_argument(
        "--trials",
        type=int,
        default=None,
        help="run this many trials now (default: what the study lacks of budget.trials)",
    )
    n.add_argument("--time-s", type=float, default=None, help="this search's wall time (default: budget.time_s)")
    which = n.add_mutually_exclusive_group()
    which.add_argument("--search-only", action="store_true", help="search, leave the test run for later")
    which.add_argument("--proof-only", action="store_true", help="run the study's best on the test images only")
    n.add_argument(
        "--proof-precision",
        choices=PRECISIONS,
        default=None,
        help="train.precision of the test run (default: the search's)",
    )
    n.add_argument("--out", default="reports/frontier.json")
    set_param(n, "added to the test run")
    n.set_defaults(func=_tune)

    t = sub.add_parser(
        "protocol-table",
        help="the comparison table under another protocol, from one DVC "
        "experiment: reports/protocols/<protocol>.md and .csv",
    )
    t.add_argument("protocol", help="notebook or validation")
    t.add_argument("--out-dir", default="reports/protocols")
    set_param(t, "for the experiment")
    t.set_defaults(func=_protocol_table)


def _report_paths(parser: argparse.ArgumentParser) -> None:
    """What the rate-distortion report reads and writes (``sweep-report`` and ``sweep``)."""
    parser.add_argument("--data", default="data/processed", help="the splits PCA's exact curve is computed on")
    parser.add_argument("--figure", default="reports/rate_distortion.png")
    parser.add_argument("--table", default="reports/rate_distortion.md")
    parser.add_argument("--csv", default="reports/rate_distortion.csv")


def _sweep_report(args: argparse.Namespace) -> int:
    import json

    from ..experiments import exps, sweep
    from ..workspace import workspace_root

    root = workspace_root()
    if args.wait:
        sweep.wait_for_queue(root)
    rows = json.loads(Path(args.exp_json).read_text()) if args.exp_json else exps.show(root)
    points = sweep.report(rows, Path(args.data), Path(args.figure), Path(args.table), Path(args.csv))
    print(
        f"sweep-report: {len({p.experiment for p in points})} experiments, code sizes "
        f"{sorted({p.size for p in points})}: {args.figure}, {args.table}, {args.csv}"
    )
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ..experiments import cluster
    from ..workspace import workspace_root

    cluster.run(
        workspace_root(),
        cluster.main_address(args.cluster),
        args.sizes,
        overrides("sweep", args.set_param),
        cpus=args.cpus,
        gpus=args.gpus,
        retries=args.retries,
        force=args.force,
        tracking_uri=args.tracking_uri,
        data_dir=Path(args.data),
        figure=Path(args.figure),
        table_path=Path(args.table),
        csv_path=Path(args.csv),
        json_path=Path(args.json) if args.json else None,
    )
    return 0


def _frontier(args: argparse.Namespace) -> int:
    from ..experiments import frontier
    from ..workspace import workspace_root

    frontier.run(workspace_root(), Path(args.out), extra=overrides("frontier", args.set_param))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from ..tuning import proof, search, space, study
    from ..workspace import workspace_root

    root = workspace_root()
    _, base = read_params(root / "params.yaml")  # read once: the search's base and the file's check
    spec = space.load(args.spec, base)
    storage = args.storage or study.default_storage(root)
    if not args.proof_only:
        address = args.cluster or None
        search.run(root, spec, base, storage, search.Where(address), trials=args.trials, time_s=args.time_s)
    if not args.search_only:
        proof.run(root, spec, storage, Path(args.out), overrides("tune", args.set_param), args.proof_precision)
    return 0


def _protocol_table(args: argparse.Namespace) -> int:
    from ..experiments import protocols
    from ..workspace import workspace_root

    protocols.run(workspace_root(), args.protocol, Path(args.out_dir), overrides("protocol-table", args.set_param))
    return 0
