"""Command line: the ``mnist-codec`` tool and the common entry of the stage scripts."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Callable, Iterable

from .errors import MnistCodecError, ParamsError
from .params import Params, load

# The only folders of the repository a stage writes to (MLflow adds mlruns/ and mlflow.db).
WRITABLE = ("data", "models", "reports")


def check_outputs(paths: Iterable[str | Path], root: Path) -> None:
    """Refuse any output path that resolves (``..`` and symlinks followed) outside
    ``root``/data, ``root``/models or ``root``/reports."""
    root = root.resolve()
    for path in paths:
        resolved = (Path.cwd() / path).resolve()
        try:
            parts = resolved.relative_to(root).parts
        except ValueError:
            parts = ()
        if not parts or parts[0] not in WRITABLE or len(parts) < 2:
            raise ParamsError(f"output path {str(path)!r} resolves to {resolved}, outside "
                              f"{', '.join(f'{root / w}/' for w in WRITABLE)}; refusing to write there")


def run_stage(name: str, params_path: str | Path, body: Callable[[Params], None],
              outputs: Iterable[str | Path] = ()) -> None:
    """Validate all params and output paths, then run ``body``.

    Expected errors become one line and exit 2; Ctrl-C and SIGTERM exit 130. A stage that
    succeeds appends its timing to the file ``MNIST_CODEC_TIMINGS`` names, if set
    (see :mod:`mnist_codec.timing`).
    """
    from . import interrupts, timing
    from .fileio import workspace_root

    interrupts.install()  # SIGTERM unwinds like Ctrl-C, never in the middle of an MLflow write
    try:
        params = load(params_path)
        check_outputs(outputs, workspace_root())
        body(params)
        timing.write_record(name)
        # The process ends next. Python's teardown runs garbage collections over every object
        # still alive, over a second with torch and MLflow loaded; frozen objects are skipped
        # (exit handlers still run, files still close) and the OS frees the memory at once.
        gc.freeze()
    except MnistCodecError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        from .tracking import failure_message

        message = failure_message(exc)  # a tracking server gone or refusing: one line, not a traceback
        if message is None:
            raise
        print(f"{name}: error: {message}", file=sys.stderr)
        sys.exit(2)


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser


def _gate(args: argparse.Namespace) -> int:
    from . import gate

    checks = gate.run(args.baseline, args.current, args.rules)
    print(gate.format_checks(checks))
    return 0 if all(c.ok for c in checks) else 1


def _check_params(args: argparse.Namespace) -> int:
    params = load(args.params)
    print(f"{args.params}: ok ({', '.join(params.activation)}; latent_dim {params.latent_dim}; "
          f"protocol {params.data.protocol})")
    return 0


def _load_codec(ref: str):
    """(pyfunc model, latent_dim, URI) of a registered codec."""
    from .tracking import load_served

    model, uri = load_served(ref)
    return model, int(model.unwrap_python_model().latent_dim), uri


def _encode(args: argparse.Namespace) -> int:
    from .serving import format_code, read_digit_png

    image = read_digit_png(args.image)  # before loading the model: a bad file fails at once
    model, _, uri = _load_codec(args.model)
    code = model.predict(image, params={"mode": "encode"})
    print(format_code(code[0]))
    print(f"{args.image}: encoded by {uri}", file=sys.stderr)
    return 0


def _decode(args: argparse.Namespace) -> int:
    from .serving import parse_code, write_digit_png

    words = args.code or sys.stdin.read().split()
    model, latent_dim, uri = _load_codec(args.model)
    image = model.predict(parse_code(words, latent_dim), params={"mode": "decode"})
    write_digit_png(args.out, image[0])
    print(f"{args.out}: decoded by {uri}", file=sys.stderr)
    return 0


def _server(args: argparse.Namespace) -> int:
    from . import server

    server.run(server.ServerConfig(folder=Path(args.dir), port=args.port, backend_store_uri=args.backend_store_uri,
                                   artifacts_destination=args.artifacts_destination, auth=args.auth,
                                   auth_db_uri=args.auth_db_uri, default_permission=args.default_permission,
                                   workers=args.workers))
    return 0  # not reached: run() becomes the server


def _sweep_report(args: argparse.Namespace) -> int:
    import json

    from . import sweep
    from .fileio import workspace_root

    root = workspace_root()
    if args.wait:
        sweep.wait_for_queue(root)
    exp = json.loads(Path(args.exp_json).read_text()) if args.exp_json else sweep.exp_show(root)
    points = sweep.report(exp, Path(args.data), Path(args.figure), Path(args.table), Path(args.csv))
    print(f"sweep-report: {len({p.experiment for p in points})} experiments, code sizes "
          f"{sorted({p.size for p in points})}: {args.figure}, {args.table}, {args.csv}")
    return 0


def _frontier(args: argparse.Namespace) -> int:
    import shlex

    from . import frontier
    from .fileio import workspace_root

    frontier.run(workspace_root(), Path(args.out), extra=tuple(shlex.split(args.extra)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-codec", description="mnist-codec pipeline tools")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gate", help="fail when fresh metrics regress against a baseline")
    g.add_argument("--baseline", required=True, help="committed metrics.json")
    g.add_argument("--current", default="reports/metrics.json", help="fresh metrics.json")
    g.add_argument("--rules", default="metrics_gate.yaml", help="direction and tolerance per metric")
    g.set_defaults(func=_gate)
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
    s.add_argument("--port", type=int, default=5000)
    s.add_argument("--dir", default=".mlflow-server", help="the server's folder: sqlite store, artifacts, auth files")
    s.add_argument("--backend-store-uri", default=None,
                   help="database URL, e.g. postgresql://mlflow:PASSWORD@127.0.0.1:5432/mlflow (default: sqlite in --dir)")
    s.add_argument("--artifacts-destination", default=None, help="where the proxy stores artifacts (default: --dir/artifacts)")
    s.add_argument("--auth", action="store_true",
                   help="MLflow's basic-auth app; the admin password comes from MLFLOW_AUTH_ADMIN_PASSWORD")
    s.add_argument("--auth-db-uri", default=None, help="users and permissions database (default: sqlite in --dir)")
    s.add_argument("--default-permission", default="READ", help="READ, EDIT, MANAGE or NO_PERMISSIONS")
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=_server)
    r = sub.add_parser("sweep-report", help="the rate-distortion figure and table from the rd-<k> experiments")
    r.add_argument("--wait", action="store_true", help="first wait until DVC's queue is empty")
    r.add_argument("--exp-json", default=None, help="`dvc exp show --json` output (default: run it)")
    r.add_argument("--data", default="data/processed", help="the splits PCA's exact curve is computed on")
    r.add_argument("--figure", default="reports/rate_distortion.png")
    r.add_argument("--table", default="reports/rate_distortion.md")
    r.add_argument("--csv", default="reports/rate_distortion.csv")
    r.set_defaults(func=_sweep_report)
    f = sub.add_parser("frontier", help="choose the strongest codec on the validation split, measure it on the "
                                        "test images, write reports/frontier.json")
    f.add_argument("--out", default="reports/frontier.json")
    f.add_argument("--extra", default="", help="more `KEY=VALUE` overrides for every run, e.g. 'train.epochs=2'")
    f.set_defaults(func=_frontier)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MnistCodecError as exc:
        print(f"mnist-codec {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
