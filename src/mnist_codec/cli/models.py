"""``mnist-codec encode``, ``decode``, ``serve``, ``server`` and ``ui``: registered codecs, and
the servers around them (the scoring server, Ray Serve, the team's tracking server, the UI)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

MODEL_HELP = "registered version: a number, or an alias (default: champion)"


def add(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("encode", help="print the code of a 28x28 grayscale digit PNG (white on black)")
    e.add_argument("image", help="PNG file, 28x28 pixels")
    e.add_argument("--model", default="champion", help=MODEL_HELP)
    e.set_defaults(func=_encode)
    d = sub.add_parser("decode", help="write the digit PNG a code decodes to")
    d.add_argument("code", nargs="*", help="the code's numbers (default: read from standard input)")
    d.add_argument("--out", "-o", required=True, help="PNG file to write")
    d.add_argument("--model", default="champion", help=MODEL_HELP)
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
    u = sub.add_parser("ui", help="MLflow's UI on this checkout's store, on 127.0.0.1, opened on the training runs")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(func=_ui)

    v = sub.add_parser(
        "serve", help="a registered codec over HTTP on 127.0.0.1 (mlflow models serve; --ray: Ray Serve)"
    )
    v.add_argument("--model", default="champion", help=MODEL_HELP)
    v.add_argument("--port", type=int, default=None, help="default 5001, or serve.yaml's port (5002) with --ray")
    v.add_argument("--ray", action="store_true", help="serve on Ray Serve: batched, JSON or npy bodies (serve.yaml)")
    v.add_argument("--config", default="serve.yaml", help="--ray: replicas, batching, limits")
    v.add_argument(
        "--cluster", default=None, help="--ray: deploy on this Ray cluster (HOST:PORT; default: Ray on this machine)"
    )
    v.set_defaults(func=_serve)


def _load_codec(ref: str) -> tuple[PyFuncModel, int, str]:
    """(pyfunc model, latent_dim, URI) of a registered codec."""
    from ..tracking.registry import load_served

    model, uri = load_served(ref)
    return model, int(model.unwrap_python_model().latent_dim), uri


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    from ..serving.digits import format_code, read_digit_png

    image = read_digit_png(args.image)  # before loading the model: a bad file fails at once
    model, _, uri = _load_codec(args.model)
    code = model.predict(image, params={"mode": "encode"})
    print(format_code(np.asarray(code)[0]))
    print(f"{args.image}: encoded by {uri}", file=sys.stderr)
    return 0


def _decode(args: argparse.Namespace) -> int:
    import numpy as np

    from ..serving.digits import parse_code, write_digit_png

    words = args.code or sys.stdin.read().split()
    model, latent_dim, uri = _load_codec(args.model)
    image = model.predict(parse_code(words, latent_dim), params={"mode": "decode"})
    write_digit_png(args.out, np.asarray(image)[0])
    print(f"{args.out}: decoded by {uri}", file=sys.stderr)
    return 0


def _server(args: argparse.Namespace) -> int:
    from ..tracking import server

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


def _ui(args: argparse.Namespace) -> int:
    from ..tracking import ui

    ui.run(args.port)
    return 0  # not reached: run() becomes the UI


def _serve(args: argparse.Namespace) -> int:
    if args.ray:
        from ..serving import config

        settings = config.load(args.config, port=args.port)  # checked before Ray starts
        cluster = args.cluster or os.environ.get("RAY_ADDRESS") or None
        config.ray_environment(local=cluster is None)  # before Ray is imported
        from ..serving import ray_serve

        ray_serve.run(args.model, settings, cluster)
        return 0
    from ..serving import http

    http.run(args.model, args.port or 5001)
    return 0  # not reached: run() becomes the server
