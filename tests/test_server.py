"""The team server's command line and settings, and the tracking module's handling of a
server that is gone or refuses a user (the real services: tests/test_team.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mnist_codec.errors import DataError, ParamsError
from mnist_codec.tracking import runs as truns
from mnist_codec.tracking import server
from mnist_codec.tracking import store as tstore


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


# --- the tracking side ---------------------------------------------------------------------------


def test_the_retry_window_follows_mlflows_settings(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")
    assert tstore.retry_window() == (6, 2 + 4 + 8 + 16 + 32 + 6 * 0.5)


def test_server_failures_become_one_line_and_other_errors_pass_through(monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    gone = MlflowException(
        "API request to endpoint /api/2.0/mlflow/runs/log-batch failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=5999): Max retries exceeded with url"
    )
    assert tstore.failure_message(gone).startswith("the MLflow tracking server http://127.0.0.1:5999 did not answer")
    denied = MlflowException(
        "API request to endpoint /api/2.0/mlflow/runs/create failed with error code 403 != 200. "
        "Response body: 'Permission denied'"
    )
    assert "refused user 'bob'" in tstore.failure_message(denied)
    login = MlflowException("API request failed with error code 401 != 200. Response body: 'You are not authenticated'")
    assert "refused the login" in tstore.failure_message(login)
    assert tstore.failure_message(MlflowException("run 4015 not found")) is None
    assert tstore.failure_message(ValueError("error code 403")) is None


def test_an_experiment_with_a_local_artifact_folder_is_refused_on_a_server(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    exp = SimpleNamespace(
        experiment_id="1",
        artifact_location="file:///home/ann/project/mlruns",
        tags={"mlflow.experimentKind": "custom_model_development"},
    )
    client = SimpleNamespace(tracking_uri="http://127.0.0.1:5000", get_experiment_by_name=lambda name: exp)
    with pytest.raises(DataError, match="a folder of one machine"):
        tstore.experiment_id(client, tmp_path)
    client.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tstore.experiment_id(client, tmp_path) == "1"


def test_runs_left_open_are_ended_failed_by_the_next_stage_on_that_store(mlflow_store, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(mlflow_store)
    exp = client.create_experiment("mnist-codec")
    open_runs = [client.create_run(exp).info.run_id for _ in range(2)]
    tstore.remember_unterminated(tmp_path, mlflow_store, open_runs[:1], "FINISHED")
    tstore.remember_unterminated(tmp_path, mlflow_store, open_runs[1:], "KILLED")
    tstore.remember_unterminated(tmp_path, "http://127.0.0.1:5999", ["elsewhere"], "FAILED")
    with truns.start_run("pca", "pca", {"latent_dim": 2}) as run:
        run.log_metrics({"eval_mse": 0.1})
    assert [client.get_run(i).info.status for i in open_runs] == ["FAILED", "KILLED"]
    journal = (tmp_path / tstore.JOURNAL).read_text()
    assert "elsewhere" in journal and open_runs[0] not in journal  # another store's entry waits for it


def test_a_store_gone_at_the_end_leaves_the_runs_in_the_journal(mlflow_store, tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    def gone(self, run_id, status=None, end_time=None):
        raise MlflowException("API request failed with exception: Max retries exceeded with url")

    started = []

    def run_while_the_server_goes() -> None:
        with truns.start_run("pca", "pca", {"latent_dim": 2}) as run:
            started.append(run)
            monkeypatch.setattr("mlflow.MlflowClient.set_terminated", gone)

    with pytest.raises(MlflowException, match="Max retries"):
        run_while_the_server_goes()
    run = started[0]
    assert run.run_id in (tmp_path / tstore.JOURNAL).read_text()


def test_retries_to_the_server_are_shown_once_per_process(capsys):
    import logging

    logger = logging.getLogger("urllib3.connectionpool")
    before = list(logger.handlers)
    try:
        tstore.show_retries()
        tstore.show_retries()
        added = [h for h in logger.handlers if h not in before]
        assert len(added) == 1
        added[0].stream = sys.stderr
        logger.warning("Retrying (Retry(total=4)) after connection broken by 'NewConnectionError': /api/2.0/x")
        assert "tracking server: Retrying (Retry(total=4))" in capsys.readouterr().err
    finally:
        for h in [h for h in logger.handlers if h not in before]:
            logger.removeHandler(h)
