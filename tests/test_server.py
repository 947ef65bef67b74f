"""The team server's command line and settings (mnist_codec.tracking.server; the store's handling
of a server that is gone: tests/test_store.py; the real services: tests/test_team.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_codec.errors import ParamsError
from mnist_codec.tracking import server


def test_the_server_command_binds_to_loopback_and_proxies_artifacts(tmp_path):
    cfg = server.ServerConfig(folder=tmp_path, port=5123)
    cmd = server.server_command(cfg)
    assert cmd[:2] == ["mlflow", "server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    assert "--serve-artifacts" in cmd and cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert "--app-name" not in cmd
    pg = "postgresql://mlflow:secret@127.0.0.1:5432/mlflow"
    cmd = server.server_command(server.ServerConfig(folder=tmp_path, backend_store_uri=pg, auth=True))
    assert cmd[cmd.index("--backend-store-uri") + 1] == pg and cmd[cmd.index("--app-name") + 1] == "basic-auth"


@pytest.mark.parametrize("password", [None, "", "password1234", "changeme", "short-pw"])
def test_a_default_missing_or_weak_admin_password_is_refused(password):
    with pytest.raises(ParamsError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        server.check_admin_password(password)


def test_a_strong_admin_password_passes():
    server.check_admin_password("a-long-team-password-42")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": "0.0.0.0"}, "127.0.0.1 only"),
        ({"port": 70000}, "not a TCP port"),
        ({"backend_store_uri": "/srv/mlflow"}, "database URL"),
        ({"default_permission": "WRITE"}, "one of READ"),
        ({"workers": 0}, "at least 1"),
    ],
)
def test_bad_settings_are_refused_by_name(tmp_path, change, message):
    with pytest.raises(ParamsError, match=message):
        server.check_config(server.ServerConfig(folder=tmp_path, **change))


def test_auth_files_hold_no_password_and_the_secret_key_is_private_and_stable(tmp_path):
    cfg = server.ServerConfig(folder=tmp_path / "srv", auth=True)
    cmd, env = server.prepare(
        cfg, {"PATH": os.environ["PATH"], "MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-team-password-42"}
    )
    ini = (tmp_path / "srv" / "basic_auth.ini").read_text()
    assert "a-long-team-password-42" not in ini and "admin_password" not in ini
    assert "default_permission = READ" in ini and f"sqlite:///{(tmp_path / 'srv').resolve()}/basic_auth.db" in ini
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str((tmp_path / "srv" / "basic_auth.ini").resolve())
    key = tmp_path / "srv" / "secret_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    _, env2 = server.prepare(cfg, {"PATH": os.environ["PATH"], "MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-team-password-42"})
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == env2["MLFLOW_FLASK_SERVER_SECRET_KEY"] == key.read_text()
    assert Path(cmd[0]).name == "mlflow" and (tmp_path / "srv" / "artifacts").is_dir()


def test_the_server_runs_no_background_job_workers_unless_the_environment_asks(tmp_path):
    _, env = server.prepare(server.ServerConfig(folder=tmp_path / "srv"), {"PATH": os.environ["PATH"]})
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    asked = {"PATH": os.environ["PATH"], "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}
    _, env = server.prepare(server.ServerConfig(folder=tmp_path / "srv"), asked)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_the_log_line_hides_the_database_password():
    assert server.redact("postgresql://mlflow:s3cret@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    assert server.redact("sqlite:////srv/mlflow.db") == "sqlite:////srv/mlflow.db"


def test_the_server_command_refuses_auth_without_a_password_and_starts_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    exe = Path(sys.executable).parent / "mnist-codec"
    proc = subprocess.run(
        [str(exe), "server", "--auth", "--dir", str(tmp_path / "srv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--auth needs the admin password in MLFLOW_AUTH_ADMIN_PASSWORD" in proc.stderr
    assert not (tmp_path / "srv").exists()
