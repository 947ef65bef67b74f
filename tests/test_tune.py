"""`make tune`: the search space file and its refusals, Optuna's proposals, the winner rule, the
record; and, marked ``full``, a tiny search for real on a local Ray (every process on
127.0.0.1), resumed, then proven on the test images as a DVC experiment by `make tune`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from mnist_codec.errors import ParamsError
from mnist_codec.experiments import frontier
from mnist_codec.params import validate
from mnist_codec.tuning import proof, proposals, search, space
from mnist_codec.tuning import study as tuning_study

REPO = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((REPO / "params.yaml").read_text())
RAW = yaml.safe_load((REPO / "tune.yaml").read_text())


def spec_with(**changes) -> dict:
    raw = json.loads(json.dumps(RAW))
    for dotted, value in changes.items():
        *path, last = dotted.split("/")
        node = raw
        for p in path:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return raw


def test_the_repositorys_search_is_valid_and_never_sees_the_test_images():
    spec = space.load(REPO / "tune.yaml", BASE)
    assert spec.study == "mnist-codec-tune" and spec.max_epochs == 30 and spec.precision == "fp32"
    assert [e.key for e in spec.space][:3] == ["deep.arch", "deep.channels", "deep.hidden"]
    for point in spec.start_from:
        p = space.params_for(BASE, spec, point)
        assert p.data.protocol == "validation" and p.n_seeds == 1 and p.train.epochs == 30 and p.latent_dim == 32
    assert spec.controlled() == {
        "data.protocol": "validation",
        "n_seeds": 1,
        "train.epochs": 30,
        "train.precision": "fp32",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"budget/trails": 4}, r"^tune.yaml: unknown key 'budget.trails'; known keys are budget.trials, budget.time_s"),
        ({"colour": 1}, r"^tune.yaml: unknown key 'colour'; known keys are study, seed"),
        ({"space/train.rate": {"float": [0.1, 1.0]}}, r"^tune.yaml: 'space.train.rate' is not a params.yaml key"),
        (
            {"space/data.protocol": {"choice": ["holdout"]}},
            r"^tune.yaml: 'space.data.protocol' is set by the search itself",
        ),
        (
            {"space/activation": {"choice": ["relu", "swish"]}},
            r"^tune.yaml: 'space.activation.choice': 'activation' = 'swish' is not allowed; expected one of relu, tanh",
        ),
        (
            {"space/train.batch_size": {"choice": [64, 0]}},
            r"^tune.yaml: 'space.train.batch_size.choice': 'train.batch_size' = 0 is not allowed",
        ),
        (
            {"space/train.lr": {"float": [0.01, 0.001]}},
            r"^tune.yaml: 'space.train.lr': float = \[0.01, 0.001\]: low must be below high",
        ),
        (
            {"space/train.lr": {"float": [0.0, 0.01], "log": True}},
            r"^tune.yaml: 'space.train.lr': float = \[0.0, 0.01\]: a log scale needs low above 0",
        ),
        (
            {"space/train.lr": {"float": [0.001, 0.01], "choice": [0.1]}},
            r"^tune.yaml: 'space.train.lr': needs exactly one of",
        ),
        (
            {"space/deep.channels": {"choice": [[32, 64]], "when": {"deep.hidden": [512, 256]}}},
            r"^tune.yaml: 'space.deep.channels.when.deep.hidden' is not an earlier choice",
        ),
        (
            {"space/deep.channels": {"choice": [[32, 64, 128, 256, 512]]}},
            (
                r"^tune.yaml: 'space.deep.channels.choice': 'deep.channels' = \[32, 64, 128, 256, 512\] "
                r"is not allowed; expected a list of 1 to 4"
            ),
        ),
        ({"start_from": [{"deep.arch": "conv"}]}, r"^tune.yaml: 'start_from\[0\]' does not set deep.channels"),
        ({"start_from/0/train.lr": 0.5}, r"^tune.yaml: 'start_from\[0\].train.lr' = 0.5 is outside its space"),
        ({"budget/trials": 0}, r"^tune.yaml: 'budget.trials' = 0 is not allowed; expected an integer from 1 to 100000"),
        (
            {"asha/grace_epochs": 31},
            r"^tune.yaml: 'asha': grace_epochs = 31 is more than max_epochs = 30",
        ),
        ({"precision": "fp16"}, r"^tune.yaml: 'precision' = 'fp16' is not allowed; expected one of fp32, bf16"),
        ({"fixed": {"train.epochs": 3}}, r"^tune.yaml: 'fixed.train.epochs' is set by the search itself"),
        ({"space": ...}, r"^tune.yaml: 'space' is missing; expected a mapping of params.yaml keys to their ranges"),
    ],
)
def test_a_bad_search_file_is_refused_in_one_line_naming_the_key(changes, message):
    with pytest.raises(ParamsError, match=message) as info:
        space.check(spec_with(**changes), BASE)
    assert "\n" not in str(info.value)


def test_a_study_searches_what_its_budget_leaves_unless_told_more():
    spec = space.check({**RAW, "budget": {"trials": 40, "time_s": 3900}}, BASE)
    assert search.this_run_budget(spec, 12, 3911.0, None, None) == (28, -11.0)  # time spent: straight to the proof
    assert search.this_run_budget(spec, 12, 600.0, None, None) == (28, 3300.0)
    assert search.this_run_budget(spec, 40, 600.0, 5, None) == (5, 3900)  # --trials alone: one budget's time at most
    assert search.this_run_budget(spec, 12, 3911.0, None, 1800.0) == (28, 1800.0)
    assert search.this_run_budget(spec, 12, 3911.0, 3, 600.0) == (3, 600.0)


def test_a_spent_study_searches_nothing_and_leaves_the_store_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = space.check({**RAW, "budget": {"trials": 40, "time_s": 100}}, BASE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tuning_study.open_study(storage, spec.study).set_user_attr(tuning_study.RUNS_ATTR, [{"wall_seconds": 101.0}])
    assert search.run(tmp_path, spec, BASE, storage=storage) == {"trials_this_run": 0, "skipped": True}
    assert not (tmp_path / "mlflow.db").exists()
    assert tuning_study.TUNING_RUN_ATTR not in tuning_study.open_study(storage, spec.study).user_attrs


def test_a_bf16_search_on_a_machine_without_bf16_is_refused_before_anything_starts(monkeypatch, tmp_path):
    from mnist_codec.codecs import device as devices
    from mnist_codec.errors import TrainingError

    monkeypatch.setattr(devices, "bf16_support", lambda device: (False, "no AVX512-BF16, AMX-BF16 or ARM BF16"))
    spec = space.check({**RAW, "precision": "bf16"}, BASE)
    with pytest.raises(TrainingError, match=r"^params: 'train.precision' = 'bf16' but cpu:.* has no AVX512-BF16"):
        search.run(tmp_path, spec, BASE, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / ".tune").exists()


def test_a_bad_file_is_named_with_the_line_of_the_key(tmp_path):
    text = (REPO / "tune.yaml").read_text(encoding="utf-8").replace("trials: ", "trials: lots #", 1)
    (tmp_path / "tune.yaml").write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "trials: lots" in t)
    with pytest.raises(ParamsError) as info:
        space.load(tmp_path / "tune.yaml", BASE)
    assert str(info.value) == (
        f"{tmp_path / 'tune.yaml'}:{line}: 'budget.trials' = 'lots' is not allowed; "
        "expected an integer from 1 to 100000"
    )


def test_a_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match=r"nope.yaml: not found \(the search space of `make tune`\)"):
        space.load(tmp_path / "nope.yaml", BASE)
    (tmp_path / "t.yaml").write_text("space: [")
    with pytest.raises(ParamsError, match=r"t.yaml:\d+: not valid YAML"):
        space.load(tmp_path / "t.yaml", BASE)


def test_optuna_proposes_only_from_the_declared_space_and_each_proposal_is_valid_params():
    spec = space.check(RAW, BASE)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=8))
    define = proposals.suggest(spec)
    entries = {e.key: e for e in spec.space}
    seen_arch = set()
    for k in range(24):
        t = study.ask()
        define(t)
        config = proposals.decode(t.params)
        for key, value in config.items():
            assert entries[key].contains(value), (key, value)
        active = {}
        for e in spec.space:  # exactly the keys active under the earlier choices
            if e.active(active):
                assert e.key in config
                active[e.key] = config[e.key]
            else:
                assert e.key not in config
        p = space.params_for(BASE, spec, config)
        assert p.deep.arch == config["deep.arch"] and p.train.lr == config["train.lr"]
        seen_arch.add(p.deep.arch)
        study.tell(t, 0.01 + 0.001 * k)
    assert seen_arch == {"conv", "mlp"}


@pytest.mark.parametrize("value", [1e-05, 0.0019454567849026857, 3.0e-3, 0.0, 1e20, 128, "cosine", [32, 64, 128]])
def test_an_override_reads_back_from_yaml_as_the_same_value(value):
    text = proof.yaml_text(value)
    assert yaml.safe_load(text) == value and " " not in text


def _study_with(trials: list[tuple[float, int, str]]):
    """An in-memory study of finished trials: (value, epochs reported, how it ended)."""
    study = optuna.create_study()
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    for k, (value, epochs, ended) in enumerate(trials):
        study.add_trial(
            optuna.trial.create_trial(
                params={"train.lr": 1e-3 * (k + 1)},
                distributions=dist,
                value=value,
                intermediate_values={e: value + (epochs - e) * 1e-3 for e in range(1, epochs + 1)},
                user_attrs={"ended": ended, "mlflow_run_id": f"run{k}"},
            )
        )
    return study


def test_the_winner_is_the_lowest_validation_score_among_trials_that_ran_every_epoch():
    study = _study_with(
        [
            (0.004, 5, "finished"),
            (0.001, 2, "asha stopped at epoch 2"),
            (0.003, 5, "finished"),
            (0.0035, 5, "finished"),
            (0.002, 3, "cut by the time budget"),
        ]
    )
    best = tuning_study.winner(study, 5)
    assert best.value == 0.003 and best.number == 2
    assert tuning_study.winner(_study_with([(0.001, 2, "asha stopped at epoch 2")]), 5) is None


def test_the_record_states_the_search_the_winner_and_what_it_replaces():
    spec = space.check({**RAW, "asha": {"max_epochs": 5, "grace_epochs": 1, "reduction_factor": 3}}, BASE)
    study = _study_with([(0.004, 5, "finished"), (0.001, 2, "asha stopped at epoch 2"), (0.003, 5, "finished")])
    study.set_user_attr(
        tuning_study.RUNS_ATTR,
        [
            {"wall_seconds": 100.0, "where": "local", "precision": "fp32"},
            {"wall_seconds": 50.5, "where": "local", "precision": "fp32"},
        ],
    )
    s = proof.search_record(study, spec, "postgresql+psycopg://bob:secret@127.0.0.1:5432/optuna")
    assert "secret" not in s["storage"] and s["trials"] == 3 and s["asha_stopped"] == 1 and s["ran_every_epoch"] == 2
    assert s["winner"]["optuna_trial"] == 2 and s["winner"]["mlflow_run_id"] == "run2" and s["wall_seconds"] == 150.5
    assert s["fixed"]["data.protocol"] == "validation" and s["budget"]["trials"] == 40
    assert proof.overrides(spec, s["winner"]["searched"]) == (
        "train.epochs=5",
        "train.precision=fp32",
        f"train.lr={proof.yaml_text(s['winner']['searched']['train.lr'])}",
    )
    previous = json.loads((REPO / "reports/frontier.json").read_text())
    final = frontier.Result("tuned", "abc", "conv_elu", {}, {"latent_dim": 32.0, "data.protocol": "holdout"})
    mse = {"mean": 0.0026, "ci95_low": 0.0025, "ci95_high": 0.0027, "n": 3, "per_seed": [0.0026] * 3}
    old = previous.get("replaces") if previous.get("command") == proof.COMMAND else previous
    rec = proof.record(
        spec,
        s,
        final,
        mse,
        ["dvc", "exp", "run", "-n", "tuned"],
        old,
        {"search": 150.5, "test run": 60.0, "total": 210.5},
        "cpu:X, 2 cores",
        "fp32",
    )
    assert rec["command"] == "make tune" and rec["codec_name"] == "Conv AE (ELU)" and rec["meets_target"]
    assert rec["replaces"]["test_mse_ci95"] == old["test_mse_ci95"] and rec["interval_below_replaced"] is (
        old["test_mse_ci95"][0] > 0.0027
    )
    text = frontier.markdown(rec)
    assert "**Conv AE (ELU)**, 32 numbers per digit: test MSE per pixel **0.002600 ± 0.000100**" in text
    assert "Target 0.0028: met." in text and "3 trials" in text and "1 stopped early by ASHA" in text
    assert f"{old['codec_name']}" in text and "`make tune` searched for 2 min 30 s" in text


def test_no_winner_yet_is_refused_by_name():
    spec = space.check({**RAW, "asha": {"max_epochs": 5}}, BASE)
    with pytest.raises(proof.ProofError, match="has no trial that ran all 5 epochs yet"):
        proof.search_record(_study_with([(0.001, 2, "asha stopped at epoch 2")]), spec, "sqlite://")


# --- for real: a local Ray, an Optuna study in SQLite, the project's MLflow store, DVC -------------

TINY_SEARCH = {
    "study": "tiny",
    "seed": 0,
    "precision": "fp32",
    "budget": {"trials": 6, "time_s": 900, "cpus_per_trial": 1},
    "asha": {"max_epochs": 4, "grace_epochs": 1, "reduction_factor": 2},
    "fixed": {"data.train_limit": 600, "data.eval_limit": 200},
    "space": {
        "deep.hidden": {"choice": [[32], [64, 16]]},
        "activation": {"choice": ["relu", "elu"]},
        "train.lr": {"float": [1.0e-5, 3.0e-2], "log": True},
        "train.batch_size": {"choice": [32, 64]},
    },
    "start_from": [{"deep.hidden": [32], "activation": "relu", "train.lr": 3.0e-3, "train.batch_size": 32}],
}


@pytest.mark.full
def test_a_tiny_search_on_a_local_ray_then_resumed_then_proven_by_make_tune(tmp_path):
    from conftest import project_copy, project_env, store_runs

    repo = project_copy(tmp_path / "repo", {"n_seeds": 2, "evaluate": {"n_projection": 100}})
    (repo / "tiny.yaml").write_text(yaml.safe_dump(TINY_SEARCH, sort_keys=False))
    env = project_env(repo)
    run = [sys.executable, "-m", "mnist_codec.cli", "tune", "--spec", "tiny.yaml"]
    proc = subprocess.run([*run, "--search-only"], cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    storage = f"sqlite:///{repo / '.tune/optuna.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    trials = tuning_study.finished(study)
    assert len(trials) == 6
    first = proposals.decode(trials[0].params)  # a new study starts from start_from
    assert first == TINY_SEARCH["start_from"][0]
    ended = [t.user_attrs["ended"] for t in trials]
    assert sum(e.startswith("asha stopped at epoch") for e in ended) >= 1, ended  # ASHA stopped some early
    assert all(e == "finished" or e.startswith("asha stopped") for e in ended)
    for t in trials:  # every proposal from the declared space
        config = proposals.decode(t.params)
        assert 1e-5 <= config["train.lr"] <= 3e-2 and config["deep.hidden"] in ([32], [64, 16])
        stopped = t.user_attrs["ended"].startswith("asha")
        epochs = tuning_study.epochs_run(t)
        assert (epochs < 4) == stopped and len(t.intermediate_values) >= epochs - 1
    # every trial an MLflow run under one tuning run, with its curve and how it ended
    runs, client = store_runs(repo, "tune")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 6
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    by_id = {r.info.run_id: r for r in children}
    for t in trials:
        r = by_id[t.user_attrs["mlflow_run_id"]]
        assert r.info.status == ("KILLED" if t.user_attrs["ended"].startswith("asha") else "FINISHED")
        history = client.get_metric_history(r.info.run_id, "val_mse")
        assert [m.step for m in history] == list(range(1, tuning_study.epochs_run(t) + 1))
        assert history[-1].value == pytest.approx(t.value)
        assert r.data.tags["mnist_codec.ray_node_ip"] == "127.0.0.1"  # Ray kept its node on loopback
        assert r.data.params["data.protocol"] == "validation" and r.data.params["searched.train.lr"]
    record = study.user_attrs[tuning_study.RUNS_ATTR]
    assert len(record) == 1 and record[0]["trials_this_run"] == 6 and record[0]["where"] == "local"
    assert record[0]["asha_stopped"] == sum(e.startswith("asha") for e in ended)
    # resumed: the study goes on where it stopped, under the same tuning run, with new proposals
    proc = subprocess.run(
        [*run, "--search-only", "--trials", "2"], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    study = optuna.load_study(study_name="tiny", storage=storage)
    again = tuning_study.finished(study)
    assert [t.number for t in again] == list(range(8))
    assert all(proposals.decode(t.params) != first for t in again[6:])  # start_from is not run twice
    runs, _ = store_runs(repo, "tune")
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1 and len(runs) == 9
    assert [r["trials_before"] for r in study.user_attrs[tuning_study.RUNS_ATTR]] == [0, 6]
    # proven: `make tune` (the study's budget of trials spent: no search left) runs the winner on the test images
    stamp = tmp_path / "installed"
    stamp.touch()
    args = "--spec tiny.yaml -S data.train_limit=600 -S data.eval_limit=200"
    proc = subprocess.run(
        ["make", "tune", f"VENV={sys.prefix}", f"STAMP={stamp}", f"TUNE_STAMP={stamp}", f"TUNE_ARGS={args}"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rec = json.loads((repo / "reports/frontier.json").read_text())
    best = tuning_study.winner(study, 4)
    assert rec["command"] == "make tune" and rec["selection"]["search"]["winner"]["optuna_trial"] == best.number
    assert rec["selection"]["search"]["trials"] == 8 and rec["protocol"] == "holdout" and rec["n_seeds"] == 2
    assert rec["replaces"]["command"] == "make frontier" and rec["precision"] == {"search": "fp32", "test run": "fp32"}
    assert math.isfinite(rec["test_mse"]) and len(rec["test_mse_per_seed"]) == 2
    assert f"-S train.lr={proof.yaml_text(best.params['train.lr'])}" in rec["experiment_command"]
    assert validate(yaml.safe_load((repo / "params.yaml").read_text())).data.protocol == "holdout"


@pytest.mark.full
def test_a_study_on_postgresql_is_joined_from_a_second_machine_through_one_tracking_server(tmp_path):
    """Two clones as two machines, one Optuna study on a real PostgreSQL and one MLflow tracking
    server: the second machine's trials number on from the first's, under the same tuning run."""
    from conftest import project_copy, project_env
    from services import Postgres, TrackingServer

    pg = Postgres()
    srv = None
    try:
        storage = pg.create_database("optuna").replace("postgresql://", "postgresql+psycopg://", 1)
        srv = TrackingServer(tmp_path / "server")
        tiny = {
            **TINY_SEARCH,
            "study": "team",
            "budget": {"trials": 4, "time_s": 600, "cpus_per_trial": 1},
            "asha": {"max_epochs": 2, "grace_epochs": 1, "reduction_factor": 2},
        }
        for machine in ("a", "b"):
            repo = project_copy(tmp_path / machine, {"n_seeds": 1})
            (repo / "tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
            env = {**project_env(repo), "MLFLOW_TRACKING_URI": srv.url}
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mnist_codec.cli",
                    "tune",
                    "--spec",
                    "tiny.yaml",
                    "--storage",
                    storage,
                    "--search-only",
                    "--trials",
                    "2",
                ],
                cwd=repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
            assert pg.password not in proc.stdout + proc.stderr  # the URL's password is never shown
        study = optuna.load_study(study_name="team", storage=storage)
        assert [t.number for t in tuning_study.finished(study)] == [0, 1, 2, 3]
        assert [r["trials_before"] for r in study.user_attrs[tuning_study.RUNS_ATTR]] == [0, 2]
        from mlflow import MlflowClient

        client = MlflowClient(srv.url)
        exp = client.get_experiment_by_name("mnist-codec")
        runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("mnist_codec.stage") == "tune"]
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1 and len(runs) == 5
        assert {r.data.tags.get("mnist_codec.tune_trial") for r in runs if r not in parents} == {
            t.user_attrs["ray_trial_id"] for t in tuning_study.finished(study)
        }
    finally:
        if srv is not None:
            srv.stop()
        pg.stop()
