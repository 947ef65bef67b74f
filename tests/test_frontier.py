"""The frontier codec: candidates scored on the validation split, the best measured on the test
images, and the record of it (reports/frontier.json), from ``dvc.api.exp_show`` rows and,
in the slow test, from `make frontier` itself on a tiny profile."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys

import pytest
import yaml

from mnist_codec.errors import DataError
from mnist_codec.experiments import frontier
from mnist_codec.params import validate


def _m(v, n):
    return {"mse": {"mean": v, "ci95_low": v * 0.9, "ci95_high": v * 1.1, "n": n, "std": v / 20, "per_seed": [v] * n}}


def _exp_show(runs: dict[str, tuple[str, dict]], older: dict[str, tuple[str, dict]] | None = None) -> list[dict]:
    """name -> (protocol, metrics), newest first, as ``dvc.api.exp_show`` rows; ``older``
    under an earlier commit."""

    def row(name, protocol, metrics, typ="branch_commit"):
        r = {
            "Experiment": name,
            "rev": f"sha-{name}",
            "typ": typ,
            "State": "Success",
            "latent_dim": 32.0,
            "data.protocol": protocol,
            "train.epochs": 40.0,
        }
        for codec, m in metrics.items():
            s, key = m["mse"], f"reports/metrics.json:{codec}"  # the headline columns, as DVC names them
            r.update({f"{key}.mse": s["mean"], f"{key}.mse_ci95": (s["ci95_high"] - s["ci95_low"]) / 2})
            r[f"{key}.n_seeds"] = s["n"]
        return r

    out = [{"Experiment": None, "rev": "main", "typ": "baseline"}]
    out += [row(n, p, m) for n, (p, m) in runs.items()]
    columns = {k for r in out for k in r}
    out = [{**dict.fromkeys(columns, "None"), **r} for r in out]  # every row has every column; missing: 'None'
    out += [{"Experiment": None, "rev": "0ld0ld0", "typ": "baseline"}]
    out += [{**row(n, p, m), "rev": "old-sha"} for n, (p, m) in (older or {}).items()]
    return out


def test_every_candidate_is_valid_params_and_selection_never_sees_the_test_images():
    for overrides in frontier.CANDIDATES.values():
        raw: dict = {}
        for o in (*frontier.VALIDATION, *overrides):  # what `-S key=value` does to params.yaml
            key, _, value = o.partition("=")
            *sections, last = key.split(".")
            node = raw
            for s in sections:
                node = node.setdefault(s, {})
            node[last] = yaml.safe_load(value)
        p = validate(raw)
        assert p.data.protocol == "validation" and p.n_seeds == 1 and p.latent_dim == 32
    cmd = frontier.exp_run_command("frontier-val-x", (*frontier.VALIDATION, "train.epochs=3"))
    assert cmd == [
        "dvc",
        "exp",
        "run",
        "--temp",
        "-n",
        "frontier-val-x",
        "-S",
        "data.protocol=validation",
        "-S",
        "n_seeds=1",
        "-S",
        "train.epochs=3",
    ]


def test_the_best_deep_codec_is_found_choice_is_by_validation_and_the_record_says_it_all():
    shown = _exp_show(
        {
            "frontier": ("holdout", {"pca": _m(0.017, 1), "conv_leaky_relu": _m(0.0031, 3)}),
            "frontier-val-wide-mlp": ("validation", {"pca": _m(0.01, 1), "deep_leaky_relu": _m(0.0050, 1)}),
            "frontier-val-conv": (
                "validation",
                {"pca": _m(0.01, 1), "ae": _m(0.002, 1), "conv_leaky_relu": _m(0.0035, 1)},
            ),
        },
        older={"frontier": ("holdout", {"deep_relu": _m(0.009, 3)})},
    )  # an older run of the name loses to the latest
    scores = {n: frontier.find(shown, frontier.VAL_PREFIX + n) for n in ("conv", "wide-mlp")}
    assert scores["conv"].codec == "conv_leaky_relu"  # the 1-layer AE is not a candidate's codec
    assert frontier.choose(scores) == "conv"
    final = frontier.find(shown, "frontier")
    assert final.rev == "sha-frontier" and final.mse["mean"] == 0.0031 and "per_seed" not in final.mse
    final = dataclasses.replace(final, mse=_m(0.0031, 3)["mse"])  # as run() does, from the experiment's commit
    rec = frontier.record(frontier.CANDIDATES, scores, "conv", final, {"total": 12.34}, "cpu:X, 2 cores")
    assert rec["command"] == "make frontier" and rec["codec_name"] == "Conv AE (LeakyReLU)"
    assert rec["test_mse"] == 0.0031 and rec["n_seeds"] == 3 and rec["meets_target"] is True
    assert rec["protocol"] == "holdout" and rec["test_mse_ci95"] == [0.0031 * 0.9, 0.0031 * 1.1]
    assert shlex.split(rec["experiment_command"]) == frontier.exp_run_command("frontier", frontier.CANDIDATES["conv"])
    assert [c["validation_mse"] for c in rec["selection"]["candidates"]] == [0.0035, 0.0050]
    assert rec["wall_seconds"] == {"total": 12.3} and rec["device"] == "cpu:X, 2 cores"
    text = frontier.markdown({**rec, "wall_seconds": {"total": 2000.0, "test run": 1500.4}})
    assert "**Conv AE (LeakyReLU)**, 32 numbers per digit: test MSE per pixel **0.003100 ± 0.000310**" in text
    assert "per seed 0.003100, 0.003100, 0.003100" in text and "Target 0.0034: met." in text
    assert "conv (conv_leaky_relu) 0.003500; wide-mlp (deep_leaky_relu) 0.005000" in text
    assert "`make frontier` took 33 min 20 s on a CPU: X, 2 cores" in text and "alone 25 min 0 s" in text
    assert f"```bash\n{rec['experiment_command']}\n```" in text
    with pytest.raises(DataError, match="no finished experiment named 'nope'"):
        frontier.find(shown, "nope")
    with pytest.raises(DataError, match="no deep codec"):
        frontier.best_deep_codec({"pca": _m(0.01, 1)["mse"], "ae": _m(0.01, 3)["mse"]})


@pytest.mark.full
def test_make_frontier_selects_on_validation_and_logs_the_test_run_to_mlflow(tmp_path):
    """`make frontier` for real on a tiny profile, from a clone with no outputs."""
    from conftest import project_copy, project_env, store_runs

    tiny = {"n_seeds": 2, "evaluate": {"n_projection": 100}}
    repo = project_copy(tmp_path / "repo", tiny)
    stamp = tmp_path / "installed"  # this environment is installed: make must not reinstall into it
    stamp.touch()
    extra = "data.train_limit=600 data.eval_limit=200 train.epochs=1"
    proc = subprocess.run(
        [
            "make",
            "frontier",
            f"VENV={sys.prefix}",
            f"STAMP={stamp}",
            "FRONTIER_ARGS=" + " ".join(f"-S {o}" for o in extra.split()),
        ],
        cwd=repo,
        env=project_env(repo),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rec = json.loads((repo / "reports/frontier.json").read_text())
    chosen = rec["selection"]["chosen"]
    scores = {c["name"]: c["validation_mse"] for c in rec["selection"]["candidates"]}
    assert set(scores) == set(frontier.CANDIDATES) and chosen == min(scores, key=scores.get)
    assert rec["protocol"] == "holdout" and rec["n_seeds"] == 2 and len(rec["test_mse_per_seed"]) == 2
    assert rec["experiment_command"].endswith(extra.replace(" ", " -S ").join(["-S ", ""]))
    assert rec["device"].startswith("cpu:") and rec["wall_seconds"]["total"] > 0
    # the experiment's models are MLflow runs and registered versions with the recorded numbers
    runs, client = store_runs(repo)
    tagged = [
        r
        for r in runs
        if r.data.tags.get("mnist_codec.dvc_exp") == "frontier"
        and r.data.tags.get("mnist_codec.codec") == rec["codec"]
        and "mnist_codec.replicate" in r.data.tags
    ]
    assert len(tagged) == 2 and all(r.info.status == "FINISHED" for r in tagged)
    by_seed = {int(r.data.tags["mnist_codec.replicate"]): r for r in tagged}
    for seed, mse in enumerate(rec["test_mse_per_seed"]):
        run = by_seed[seed]
        assert run.data.metrics["eval_mse"] == pytest.approx(mse, abs=1e-7)
        # its registered version (an identical earlier training, on these tiny splits the
        # validation run's, is not registered twice) now carries the test evaluation
        version = client.get_model_version("mnist-codec", run.data.tags["mnist_codec.model_version"].split("/")[1])
        assert float(version.tags["mnist_codec.eval_mse"]) == pytest.approx(mse, abs=1e-9)
    # validation runs never saw the test split: their evaluation data is a slice of the training images
    val = [r for r in runs if r.data.tags.get("mnist_codec.dvc_exp", "").startswith(frontier.VAL_PREFIX)]
    assert val and all(r.data.params.get("data.protocol") in (None, "validation") for r in val)


@pytest.mark.full
def test_make_notebook_table_writes_the_notebook_protocols_table_from_its_experiment(tmp_path):
    """`make notebook-table` for real on a tiny profile: one DVC experiment under the notebook
    protocol, its table copied from the experiment's commit into reports/protocols/."""
    from conftest import project_copy, project_env

    repo = project_copy(tmp_path / "repo", {"n_seeds": 2, "activation": ["relu"], "evaluate": {"n_projection": 100}})
    stamp = tmp_path / "installed"
    stamp.touch()

    def results():  # the workspace's reports, the protocol tables aside
        return sorted(
            (p.relative_to(repo), p.read_bytes())
            for p in (repo / "reports").rglob("*")
            if p.is_file() and "protocols" not in p.parts
        )

    before = results()
    args = "-S data.train_limit=600 -S train.epochs=1"
    proc = subprocess.run(
        ["make", "notebook-table", f"VENV={sys.prefix}", f"STAMP={stamp}", f"PROTOCOL_ARGS={args}"],
        cwd=repo,
        env=project_env(repo),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    table = (repo / "reports/protocols/notebook.md").read_text()
    assert "-S data.protocol=notebook -S data.train_limit=600 -S train.epochs=1" in table.splitlines()[0]
    assert "Evaluated on 600 images" in table and "notebook protocol" in table and "| Notebook MSE |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["PCA", "AE (1 layer)", "Deep AE (ReLU)"]
    assert (repo / "reports/protocols/notebook.csv").read_text().startswith("codec")
    # the workspace's own results are untouched: the experiment ran in a temporary copy
    assert results() == before
