"""Command line: the ``mnist-codec`` tool and the common entry of the stage scripts."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Callable

from .errors import MnistCodecError
from .params import Params, load


def _terminate(signum, frame):  # noqa: ARG001
    # Unwind like Ctrl-C, so context managers (MLflow runs, temporary files) close cleanly.
    raise KeyboardInterrupt(f"signal {signum}")


def run_stage(name: str, params_path: str | Path, body: Callable[[Params], None]) -> None:
    """Validate all params, then run ``body``; expected errors become one line and exit 2."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        params = load(params_path)
        body(params)
    except MnistCodecError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)


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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MnistCodecError as exc:
        print(f"mnist-codec {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
