"""The tracking store (mnist_codec.tracking.store): the retry window a stage waits out, a server
that is gone or refuses a user in one line, runs left open ended by the next stage, a store gone
at the end kept in the journal (the real services: tests/test_team.py)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from mnist_codec.errors import DataError
from mnist_codec.tracking import runs as truns
from mnist_codec.tracking import store as tstore


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
