import os
import subprocess
from pathlib import Path

import pytest

from mnist_codec.tracking import runs as truns
from mnist_codec.tracking import store as tstore
from mnist_codec.tracking import tags as ttags


def test_root_comes_from_dvc_root_then_the_repo_above_cwd(tmp_path, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tstore.repo_root(tmp_path / "a" / "b") == tmp_path
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "a"))
    assert tstore.repo_root(tmp_path / "a" / "b") == tmp_path / "a"


def test_tracking_uri_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tstore.tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tstore.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_flatten_and_pipeline_id():
    assert truns.flatten({"train": {"lr": 0.001}, "activation": ["relu", "tanh"]}) == {
        "train.lr": 0.001,
        "activation": "relu,tanh",
    }
    a = ttags.pipeline_id("abc", "workspace", {"seed": 1})
    assert a == ttags.pipeline_id("abc", "workspace", {"seed": 1}) != ttags.pipeline_id("abc", "exp-1", {"seed": 1})


def test_run_logs_params_history_and_tags(mlflow_store, monkeypatch):
    import mlflow

    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    with truns.start_run("ae", "train_ae", {"seed": 3, "train": {"lr": 0.001}}, {"mnist_codec.codec": "ae"}) as run:
        for epoch in (1, 2, 3):
            run.log_epoch(epoch, 1.0 / epoch, 2.0 / epoch)
    client = mlflow.MlflowClient(mlflow_store)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"seed": "3", "train.lr": "0.001"}
    assert got.data.tags["mnist_codec.dvc_exp"] == "exp-test"
    assert got.data.tags["mnist_codec.stage"] == "train_ae"
    assert got.info.run_name == "ae (exp-test)"  # the UI labels runs by name: main's and an experiment's differ
    history = client.get_metric_history(run.run_id, "eval_loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0), (3, 2.0 / 3)]
    exp = client.get_experiment(got.info.experiment_id)
    assert exp.name == "mnist-codec"
    assert exp.artifact_location == (tstore.repo_root() / "mlruns").as_uri()
    # the UI opens it on its training runs, not on the GenAI overview
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_experiment_created_without_the_kind_tag_gets_it(mlflow_store):
    import mlflow

    client = mlflow.MlflowClient(mlflow_store)
    exp_id = client.create_experiment("mnist-codec", artifact_location=(tstore.repo_root() / "mlruns").as_uri())
    assert "mlflow.experimentKind" not in client.get_experiment(exp_id).tags
    assert tstore.experiment_id(client, tstore.repo_root()) == exp_id
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.parametrize(("exc", "status"), [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_run_that_raises_ends_failed_or_killed(mlflow_store, exc, status):
    import mlflow

    with pytest.raises(type(exc)), truns.start_run("x", "train_ae", {}) as run:
        raise exc
    assert mlflow.MlflowClient(mlflow_store).get_run(run.run_id).info.status == status
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_store


def test_a_top_level_run_says_which_run_it_is(mlflow_store, monkeypatch, tmp_path):
    """A workspace run carries its branch and commit (marked -dirty where the code differs from
    it), an experiment's run the experiment's name; a seed's run keeps its own name."""
    import subprocess

    import mlflow

    specs = [truns.RunSpec("deep_tanh", {}), truns.RunSpec("deep_tanh seed0", {}, parent=0)]
    client = mlflow.MlflowClient(mlflow_store)

    def names() -> list[str]:
        with truns.start_runs(specs, "train_deep", {}) as runs:
            pass
        return [client.get_run(r.run_id).info.run_name for r in runs]

    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert names() == ["deep_tanh", "deep_tanh seed0"]  # no git: no commit to name

    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src/model.py").write_text("WIDTH = 256\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@mnist-codec.invalid"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "code"]):
        subprocess.run([*git, *cmd], cwd=repo, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
    monkeypatch.chdir(repo)
    assert names() == [f"deep_tanh (main@{sha.strip()})", "deep_tanh seed0"]
    (repo / "reports").mkdir()
    (repo / "reports/metrics.json").write_text("{}")  # outputs are not the code
    assert names()[0] == f"deep_tanh (main@{sha.strip()})"
    (repo / "src/model.py").write_text("WIDTH = 128\n")
    assert names()[0] == f"deep_tanh (main@{sha.strip()}-dirty)"
    monkeypatch.setenv("DVC_EXP_NAME", "epochs-8")
    assert names() == ["deep_tanh (epochs-8)", "deep_tanh seed0"]


def test_several_runs_open_at_once_each_get_their_own_metrics(mlflow_store):
    import mlflow

    specs = [truns.RunSpec(f"m{k}", {"k": k}, {"mnist_codec.codec": f"m{k}"}) for k in range(3)]
    with truns.start_runs(specs, "train_deep", {"seed": 1}) as runs:
        for epoch in (1, 2):
            for k, run in enumerate(runs):  # interleaved, as when models train side by side
                run.log_epoch(epoch, float(k), float(k) + epoch)
    client = mlflow.MlflowClient(mlflow_store)
    for k, run in enumerate(runs):
        got = client.get_run(run.run_id)
        assert got.info.status == "FINISHED" and got.info.run_name.split(" (")[0] == f"m{k}"  # (branch@commit)
        assert got.data.params == {"k": str(k)}
        assert [m.value for m in client.get_metric_history(run.run_id, "eval_loss")] == [k + 1.0, k + 2.0]


def test_a_signal_during_a_store_write_is_raised_after_it(monkeypatch):
    import signal

    from mnist_codec import interrupts

    monkeypatch.setattr(interrupts, "_installed", True)
    order = []

    def write_while_sigterm_arrives() -> None:
        with interrupts.deferred():
            interrupts._handler(signal.SIGTERM, None)  # as if SIGTERM arrived mid-write
            order.append("write finished")

    with pytest.raises(KeyboardInterrupt):
        write_while_sigterm_arrives()
    assert order == ["write finished"]
    with pytest.raises(KeyboardInterrupt):  # outside a write it is raised at once
        interrupts._handler(signal.SIGTERM, None)
    with interrupts.deferred():
        order.append("nothing pending")


def test_make_ui_serves_the_checkouts_store_on_loopback_and_names_the_runs_table(tmp_path):
    """`mnist-codec ui` (make ui) without an activated venv: the experiment gets its kind tag,
    the printed address is its runs table, and MLflow answers there, on 127.0.0.1 only."""
    import re
    import sys
    import urllib.request

    import mlflow

    from conftest import clean_env
    from services import Service, free_port, http_ok

    root = tmp_path / "checkout"
    (root / ".dvc").mkdir(parents=True)
    port = free_port()
    env = {**clean_env(), "PATH": "/usr/bin:/bin", "DVC_ROOT": str(root)}
    ui = Service(
        "mlflow ui",
        [str(Path(sys.executable).parent / "mnist-codec"), "ui", "--port", str(port)],
        tmp_path / "ui.log",
        env=env,
        cwd=root,
    )
    try:
        ui.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout=120)
        url = re.search(r"training runs are at (\S+)", ui.tail()).group(1)
        exp = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_experiment_by_name("mnist-codec")
        assert url == f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
        with urllib.request.urlopen(url.split("#")[0], timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert listening.strip() and all(" 127.0.0.1:" in line for line in listening.strip().splitlines()), listening
    finally:
        ui.stop()


def test_a_dataset_that_another_writer_inserted_first_is_linked_on_the_next_try(mlflow_store, monkeypatch):
    """Two stages on two machines log the same new split to one server at once: the store's
    lookup-then-insert lets one of them hit the dataset table's unique key (a 400 from the
    server). That run logs again and links the row the other wrote; other errors still raise."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST

    ref = truns.DatasetRef("mnist-holdout-train", "0" * 32, "data/processed/train_x.npy", "training")
    race = "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"
    calls = []
    real = mlflow.MlflowClient.log_inputs

    def first_loses_the_race(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException(race, error_code=BAD_REQUEST)  # as the store words it
        return real(self, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(mlflow.MlflowClient, "log_inputs", first_loses_the_race)
    with truns.start_run("ae", "train_ae", {"seed": 0}, {}) as run:
        run.log_inputs([ref])
    assert len(calls) == 2
    got = mlflow.MlflowClient(mlflow_store).get_run(run.run_id)
    assert [i.dataset.name for i in got.inputs.dataset_inputs] == ["mnist-holdout-train"]

    def refused(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        raise MlflowException("Invalid dataset name", error_code=BAD_REQUEST)

    monkeypatch.setattr(mlflow.MlflowClient, "log_inputs", refused)
    calls.clear()
    with pytest.raises(MlflowException, match="Invalid dataset name"), truns.start_run("ae", "train_ae", {}, {}) as r:
        r.log_inputs([ref])
    assert len(calls) == 1  # not a race: not tried again
