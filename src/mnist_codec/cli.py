"""The ``mnist-codec`` command: the gate, params checks, encode/decode, the UI, the scoring
server and the tracking server, the sweep's report, the frontier and the protocol tables.
No stage imports it (stages go through :mod:`mnist_codec.runner`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import GateError, MnistCodecError, ParamsError
from .params import load
from .params import read as read_params

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel


def _gate(args: argparse.Namespace) -> int:
    from .evaluation import gate

    rules = gate.load_rules(args.rules)
    if args.baseline is not None:  # two files, no git: the calibration's and a script's question
        if args.report or args.only or args.base:
            raise GateError("gate: --baseline compares two files; --report, --only and --base ask git's questions")
        baseline, current = (
            gate.read_metrics(args.baseline),
            gate.read_metrics(args.current or "reports/metrics_detail.json"),
        )
        checks = gate.compare(baseline, current, rules)
        print(gate.format_checks(checks, every=args.all))
        return 0 if all(c.ok for c in checks) else 1

    from .evaluation import verdict as gate_verdict
    from .workspace import workspace_root

    root = workspace_root()
    accepted = Path(args.accepted) if args.accepted else None
    v = gate_verdict.ask(root, rules, accepted, only=args.only, base=args.base, current=args.current)
    if args.all:
        for comparison in v.comparisons:
            if comparison.checks:
                print(f"gate --all: {comparison.question}")
                print(gate.format_checks(list(comparison.checks), every=True))
    print(gate_verdict.format_terminal(v))
    from .machine import describe

    judged = v.current.rev.short if v.current.rev is not None else "workspace"
    report = gate_verdict.report_markdown(v, args.title or f"mnist-codec {judged}: the gate", describe())
    if args.report:
        from . import fileio

        fileio.write_text(args.report, report)
    if args.current is None and v.current.rev is not None:  # HEAD's verdict, on HEAD's evaluate run
        from .tracking import verdicts

        print(verdicts.log_verdict(root, v.current.rev.sha, v.current.digest, v.tags(verdicts.PREFIX), report))
    return 0 if v.passed else 1


def _accept(args: argparse.Namespace) -> int:
    from .evaluation import gate, verdict
    from .workspace import workspace_root

    root = workspace_root()
    accepted = verdict.accept(
        root,
        gate.load_rules(args.rules),
        Path(args.accepted) if args.accepted else None,
        args.reason,
        base=args.base,
        current=args.current,
    )
    print(accepted)
    return 0


def _check_params(args: argparse.Namespace) -> int:
    params = load(args.params)
    print(
        f"{args.params}: ok ({', '.join(params.activation)}; latent_dim {params.latent_dim}; "
        f"protocol {params.data.protocol})"
    )
    return 0


def _load_codec(ref: str) -> tuple[PyFuncModel, int, str]:
    """(pyfunc model, latent_dim, URI) of a registered codec."""
    from .tracking.registry import load_served

    model, uri = load_served(ref)
    return model, int(model.unwrap_python_model().latent_dim), uri


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    from .serving.digits import format_code, read_digit_png

    image = read_digit_png(args.image)  # before loading the model: a bad file fails at once
    model, _, uri = _load_codec(args.model)
    code = model.predict(image, params={"mode": "encode"})
    print(format_code(np.asarray(code)[0]))
    print(f"{args.image}: encoded by {uri}", file=sys.stderr)
    return 0


def _decode(args: argparse.Namespace) -> int:
    import numpy as np

    from .serving.digits import parse_code, write_digit_png

    words = args.code or sys.stdin.read().split()
    model, latent_dim, uri = _load_codec(args.model)
    image = model.predict(parse_code(words, latent_dim), params={"mode": "decode"})
    write_digit_png(args.out, np.asarray(image)[0])
    print(f"{args.out}: decoded by {uri}", file=sys.stderr)
    return 0


def _server(args: argparse.Namespace) -> int:
    from .tracking import server

    server.run(
        server.ServerConfig(
            folder=Path(args.dir),
            port=args.port,
            backend_store_uri=args.backend_store_uri,
            artifacts_destination=args.artifacts_destination,
            auth=args.auth,
            auth_db_uri=args.auth_db_uri,
            default_permission=args.default_permission,
            workers=args.workers,
        )
    )
    return 0  # not reached: run() becomes the server


def _sweep_report(args: argparse.Namespace) -> int:
    import json

    from .experiments import exps, sweep
    from .workspace import workspace_root

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
    from .experiments import cluster
    from .workspace import workspace_root

    cluster.run(
        workspace_root(),
        cluster.main_address(args.cluster),
        args.sizes,
        _overrides("sweep", args.set_param),
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
    from .experiments import frontier
    from .workspace import workspace_root

    frontier.run(workspace_root(), Path(args.out), extra=_overrides("frontier", args.set_param))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from .tuning import proof, search, space
    from .workspace import workspace_root

    root = workspace_root()
    _, base = read_params(root / "params.yaml")  # read once: the search's base and the file's check
    spec = space.load(args.spec, base)
    storage = args.storage or search.default_storage(root)
    if not args.proof_only:
        address = args.cluster or None
        search.run(root, spec, base, storage, search.Where(address), trials=args.trials, time_s=args.time_s)
    if not args.search_only:
        proof.run(root, spec, storage, Path(args.out), _overrides("tune", args.set_param), args.proof_precision)
    return 0


def _report_paths(parser: argparse.ArgumentParser) -> None:
    """What the rate-distortion report reads and writes (``sweep-report`` and ``sweep``)."""
    parser.add_argument("--data", default="data/processed", help="the splits PCA's exact curve is computed on")
    parser.add_argument("--figure", default="reports/rate_distortion.png")
    parser.add_argument("--table", default="reports/rate_distortion.md")
    parser.add_argument("--csv", default="reports/rate_distortion.csv")


def _judgement_args(parser: argparse.ArgumentParser, current_too: str = "") -> None:
    """What ``gate`` and ``accept`` judge: the results, against which base, by which rules, with
    which acceptances. ``current_too``: what else --current means to that command."""
    parser.add_argument(
        "--base",
        default=None,
        help="the results before the change: a commit, branch or DVC experiment (default: $GATE_BASE, else the "
        "merge-base with origin/main, else the results before HEAD's last change to them)",
    )
    parser.add_argument(
        "--current",
        default=None,
        help="this revision's committed results instead of HEAD's (a commit, branch or DVC experiment)"
        + (f"; with {current_too}" if current_too else ""),
    )
    parser.add_argument("--rules", default="metrics_gate.yaml", help="direction and tolerance per metric")
    parser.add_argument("--accepted", default=None, help="the accepted regressions (default: metrics_accepted.yaml)")


def _overrides(command: str, values: list[str]) -> tuple[str, ...]:
    """``-S KEY=VALUE`` overrides, checked for their form (their values are checked by the stages)."""
    for override in values:
        key, eq, _ = override.partition("=")
        if not eq or not key:
            raise ParamsError(f"{command}: -S {override!r} is not KEY=VALUE (as dvc exp run -S takes)")
    return tuple(values)


def _protocol_table(args: argparse.Namespace) -> int:
    from .experiments import protocols
    from .workspace import workspace_root

    protocols.run(workspace_root(), args.protocol, Path(args.out_dir), _overrides("protocol-table", args.set_param))
    return 0


def _readme(args: argparse.Namespace) -> int:
    from . import readme

    changed = readme.update(Path(args.readme), Path(args.comparison))
    print(f"readme: {args.readme} {'updated from' if changed else 'already shows'} {args.comparison}")
    return 0


def _ui(args: argparse.Namespace) -> int:
    from .tracking import ui

    ui.run(args.port)
    return 0  # not reached: run() becomes the UI


def _serve(args: argparse.Namespace) -> int:
    if args.ray:
        from .serving import config

        settings = config.load(args.config, port=args.port)  # checked before Ray starts
        cluster = args.cluster or os.environ.get("RAY_ADDRESS") or None
        config.ray_environment(local=cluster is None)  # before Ray is imported
        from .serving import ray_serve

        ray_serve.run(args.model, settings, cluster)
        return 0
    from .serving import http

    http.run(args.model, args.port or 5001)
    return 0  # not reached: run() becomes the server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-codec", description="mnist-codec pipeline tools")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser(
        "gate",
        help="fail when results regress: the fresh run against HEAD's (reproduce), HEAD's against the base (regress)",
    )
    g.add_argument("--only", choices=["reproduce", "regress"], default=None, help="ask one question (default: both)")
    _judgement_args(g, "--baseline: the fresh detail file")
    g.add_argument("--baseline", default=None, help="compare two detail files instead, this one and --current")
    g.add_argument("--all", action="store_true", help="also list every check of every comparison")
    g.add_argument("--report", default=None, help="also write the comparison report, Markdown, to this file")
    g.add_argument("--title", default=None, help="the report's heading")
    g.set_defaults(func=_gate)
    a = sub.add_parser(
        "accept",
        help="record the regressions the gate sees now, with a reason, in metrics_accepted.yaml (commit it)",
    )
    a.add_argument("--reason", required=True, help="why these results may be worse: a reviewer reads it")
    _judgement_args(a)
    a.set_defaults(func=_accept)
    c = sub.add_parser("check-params", help="validate a params file")
    c.add_argument("params", nargs="?", default="params.yaml")
    c.set_defaults(func=_check_params)
    model_help = "registered version: a number, or an alias (default: champion)"
    e = sub.add_parser("encode", help="print the code of a 28x28 grayscale digit PNG (white on black)")
    e.add_argument("image", help="PNG file, 28x28 pixels")
    e.add_argument("--model", default="champion", help=model_help)
    e.set_defaults(func=_encode)
    d = sub.add_parser("decode", help="write the digit PNG a code decodes to")
    d.add_argument("code", nargs="*", help="the code's numbers (default: read from standard input)")
    d.add_argument("--out", "-o", required=True, help="PNG file to write")
    d.add_argument("--model", default="champion", help=model_help)
    d.set_defaults(func=_decode)
    s = sub.add_parser("server", help="the team's MLflow tracking server on 127.0.0.1, artifacts proxied")
    s.add_argument("--port", type=int, default=5050)
    s.add_argument("--dir", default=".mlflow-server", help="the server's folder: sqlite store, artifacts, auth files")
    s.add_argument(
        "--backend-store-uri",
        default=None,
        help="database URL, e.g. postgresql://mlflow:PASSWORD@127.0.0.1:5432/mlflow (default: sqlite in --dir)",
    )
    s.add_argument(
        "--artifacts-destination", default=None, help="where the proxy stores artifacts (default: --dir/artifacts)"
    )
    s.add_argument(
        "--auth",
        action="store_true",
        help="MLflow's basic-auth app; the admin password comes from MLFLOW_AUTH_ADMIN_PASSWORD",
    )
    s.add_argument("--auth-db-uri", default=None, help="users and permissions database (default: sqlite in --dir)")
    s.add_argument("--default-permission", default="READ", help="READ, EDIT, MANAGE or NO_PERMISSIONS")
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=_server)
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
    w.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override added to every experiment, as `dvc exp run -S` takes it",
    )
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
    f.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override added to every run, as `dvc exp run -S` takes it, e.g. -S train.epochs=2",
    )
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
        choices=["fp32", "bf16"],
        default=None,
        help="train.precision of the test run (default: the search's)",
    )
    n.add_argument("--out", default="reports/frontier.json")
    n.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override added to the test run, as `dvc exp run -S` takes it",
    )
    n.set_defaults(func=_tune)

    t = sub.add_parser(
        "protocol-table",
        help="the comparison table under another protocol, from one DVC "
        "experiment: reports/protocols/<protocol>.md and .csv",
    )
    t.add_argument("protocol", help="notebook or validation")
    t.add_argument("--out-dir", default="reports/protocols")
    t.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for the experiment, as `dvc exp run -S` takes it",
    )
    t.set_defaults(func=_protocol_table)

    m = sub.add_parser("readme", help="write the README's headline table from reports/comparison.md")
    m.add_argument("--readme", default="README.md")
    m.add_argument("--comparison", default="reports/comparison.md")
    m.set_defaults(func=_readme)

    u = sub.add_parser("ui", help="MLflow's UI on this checkout's store, on 127.0.0.1, opened on the training runs")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(func=_ui)

    v = sub.add_parser(
        "serve", help="a registered codec over HTTP on 127.0.0.1 (mlflow models serve; --ray: Ray Serve)"
    )
    v.add_argument("--model", default="champion", help=model_help)
    v.add_argument("--port", type=int, default=None, help="default 5001, or serve.yaml's port (5002) with --ray")
    v.add_argument("--ray", action="store_true", help="serve on Ray Serve: batched, JSON or npy bodies (serve.yaml)")
    v.add_argument("--config", default="serve.yaml", help="--ray: replicas, batching, limits")
    v.add_argument(
        "--cluster", default=None, help="--ray: deploy on this Ray cluster (HOST:PORT; default: Ray on this machine)"
    )
    v.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    from .runner import setup_logging

    setup_logging()
    try:
        return args.func(args)
    except MnistCodecError as exc:
        print(f"mnist-codec {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
