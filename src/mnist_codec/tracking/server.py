"""The team's MLflow tracking server: ``mnist-codec server`` (``make server``).

It builds the ``mlflow server`` command line and nothing else runs the server: MLflow's own
server on 127.0.0.1 with the artifact proxy on (``--serve-artifacts``), so clients send models
and figures through HTTP and never hold storage credentials. The backend store is a sqlite
file in the server's folder unless a database URL is given (``postgresql://…``). With
``--auth`` it runs MLflow's basic-auth app: the admin password is read from
``MLFLOW_AUTH_ADMIN_PASSWORD`` and the server refuses to start without one (MLflow creates the
admin user from it the first time; it is never written to disk by this module).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ParamsError

ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
# Passwords a server must never be left with: the one older MLflow releases shipped in
# basic_auth.ini, and the obvious ones.
WEAK_PASSWORDS = {"password1234", "password", "admin", "changeme", "mlflow"}
MIN_PASSWORD_LENGTH = 12
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
# MLflow's server starts background job workers (huey consumers, one process per job kind) for
# GenAI evaluation, which this project's runs never use: they cost seconds of CPU at every start
# and stay resident. Off unless the environment turns them on.
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


@dataclass(frozen=True)
class ServerConfig:
    folder: Path  # holds the sqlite store, the artifacts, the auth files
    port: int = 5050
    host: str = "127.0.0.1"
    backend_store_uri: str | None = None  # default: sqlite file in ``folder``
    artifacts_destination: str | None = None  # default: ``folder``/artifacts
    auth: bool = False
    auth_db_uri: str | None = None  # default: sqlite file in ``folder``
    default_permission: str = "READ"  # what a user may do on experiments and models they did not create
    workers: int = 1

    @property
    def backend(self) -> str:
        return self.backend_store_uri or f"sqlite:///{self.folder.resolve() / 'mlflow.db'}"

    @property
    def artifacts(self) -> str:
        return self.artifacts_destination or str(self.folder.resolve() / "artifacts")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def check_admin_password(password: str | None) -> None:
    """A basic-auth server needs an admin password of its owner's choosing."""
    if not password:
        raise ParamsError(
            f"--auth needs the admin password in {ADMIN_PASSWORD_ENV} (MLflow creates the admin "
            f'user with it on first start); set it, e.g. {ADMIN_PASSWORD_ENV}="$(openssl rand -hex 16)"'
        )
    if password.lower() in WEAK_PASSWORDS or len(password) < MIN_PASSWORD_LENGTH:
        raise ParamsError(
            f"{ADMIN_PASSWORD_ENV} is a default or weak password; use at least "
            f"{MIN_PASSWORD_LENGTH} characters that are not a well-known default"
        )


def check_config(cfg: ServerConfig) -> None:
    if cfg.host != "127.0.0.1":
        raise ParamsError(
            f"host {cfg.host!r}: the server binds to 127.0.0.1 only; reach it from other machines "
            "through an SSH tunnel or a reverse proxy with TLS (see the docs: Working as a team)"
        )
    if not 1 <= cfg.port <= 65535:
        raise ParamsError(f"port {cfg.port}: not a TCP port")
    if cfg.workers < 1:
        raise ParamsError(f"workers {cfg.workers}: at least 1")
    if cfg.default_permission not in PERMISSIONS:
        raise ParamsError(f"default permission {cfg.default_permission!r}: one of {', '.join(PERMISSIONS)}")
    scheme = cfg.backend.split(":", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql", "mssql"):
        raise ParamsError(
            f"backend store {cfg.backend!r}: a database URL is needed (sqlite:///… or "
            "postgresql://user:password@host:port/database)"
        )


def auth_config_text(cfg: ServerConfig) -> str:
    """MLflow's basic_auth.ini for this server; the admin password stays in the environment."""
    db = cfg.auth_db_uri or f"sqlite:///{cfg.folder.resolve() / 'basic_auth.db'}"
    return (
        "[mlflow]\n"
        f"default_permission = {cfg.default_permission}\n"
        f"database_uri = {db}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def server_command(cfg: ServerConfig, mlflow_bin: str = "mlflow") -> list[str]:
    cmd = [
        mlflow_bin,
        "server",
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
        "--workers",
        str(cfg.workers),
        "--backend-store-uri",
        cfg.backend,
        "--serve-artifacts",
        "--artifacts-destination",
        cfg.artifacts,
    ]
    if cfg.auth:
        cmd += ["--app-name", "basic-auth"]
    return cmd


def secret_key(folder: Path) -> str:
    """The static key MLflow's auth app needs for CSRF tokens, kept in the server's folder so
    it survives restarts (0600)."""
    path = folder / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def prepare(cfg: ServerConfig, environ: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Validate, create the server's folder and files, and return (command, environment)."""
    check_config(cfg)
    env = dict(environ)
    if cfg.auth:
        check_admin_password(env.get(ADMIN_PASSWORD_ENV))
    env.setdefault(JOB_EXECUTION_ENV, "false")
    cfg.folder.mkdir(parents=True, exist_ok=True)
    if cfg.artifacts_destination is None:
        Path(cfg.artifacts).mkdir(exist_ok=True)
    if cfg.auth:
        ini = cfg.folder / "basic_auth.ini"
        ini.write_text(auth_config_text(cfg))
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini.resolve())
        env.setdefault(SECRET_KEY_ENV, secret_key(cfg.folder))
    mlflow_bin = shutil.which("mlflow", path=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    if mlflow_bin is None:
        raise ParamsError("the mlflow command is not installed in this environment (make install)")
    return server_command(cfg, mlflow_bin), env


def redact(uri: str) -> str:
    """A database URL fit for a log: its password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def run(cfg: ServerConfig) -> None:
    """Replace this process with ``mlflow server`` (its PID is this one's)."""
    cmd, env = prepare(cfg, dict(os.environ))
    print(
        f"mnist-codec server: {cfg.url} (store {redact(cfg.backend)}, artifacts {cfg.artifacts}"
        f"{', basic-auth' if cfg.auth else ''})",
        file=sys.stderr,
        flush=True,
    )
    os.execve(cmd[0], cmd, env)
