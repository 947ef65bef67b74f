"""End to end: the real dvc.yaml on the real (bundled) MNIST, shrunk, in a throw-away git repo."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import project_copy, project_env, sh
from layout_rules import AT_LEAST, AT_MOST, SIDE_CHANNELS, STATUS

pytestmark = pytest.mark.full

CODECS = ["pca", "ae", "deep_relu", "deep_tanh", "deep_leaky_relu"]
N_SEEDS = 3  # the default
SMALL = {"data": {"train_limit": 3000, "eval_limit": 500}, "train": {"epochs": 2}, "evaluate": {"n_projection": 200}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git repo holding the project's files (what a clone has), with a small profile."""
    return project_copy(tmp_path_factory.mktemp("e2e") / "repo", SMALL)


# Put on PYTHONPATH as sitecustomize: every stage process writes, as it exits, the files of
# the modules it imported, so the test below can hold dvc.yaml's hand-listed deps to them.
TRACE_HOOK = """
import atexit, os, sys

def _dump():
    out = os.environ.get("MNIST_CODEC_IMPORT_TRACE")
    script = sys.argv[0] if sys.argv else ""
    if out and script.endswith(".py"):
        files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
        name = os.path.splitext(os.path.basename(script))[0]
        with open(os.path.join(out, name + ".txt"), "a") as fh:
            fh.write("\\n".join(sorted(f for f in files if f)) + "\\n")

atexit.register(_dump)
"""


@pytest.fixture(scope="module")
def first_repro(repo: Path) -> subprocess.CompletedProcess:
    hook, traces = repo.parent / "trace-hook", repo.parent / "imports"
    hook.mkdir()
    traces.mkdir()
    (hook / "sitecustomize.py").write_text(TRACE_HOOK)
    env = project_env(repo)
    env.update(
        PYTHONPATH=f"{hook}{os.pathsep}{env['PYTHONPATH']}",
        MNIST_CODEC_IMPORT_TRACE=str(traces),
        MNIST_CODEC_TIMINGS=str(repo.parent / "timings.jsonl"),
    )
    proc = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"dvc repro failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def missing_deps(imported: list[str], deps: list[str]) -> list[str]:
    """The imported project files that no dep (a file, or a folder above it) covers."""
    return [f for f in imported if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]


def test_missing_deps_finds_an_unlisted_module():
    deps = ["src/mnist_codec/data.py", "src/mnist_codec/datasets/mnist"]
    assert missing_deps(["src/mnist_codec/data.py", "src/mnist_codec/datasets/mnist/x.gz"], deps) == []
    assert missing_deps(["src/mnist_codec/stats.py"], deps) == ["src/mnist_codec/stats.py"]


def test_every_module_a_stage_imports_is_one_of_its_deps_or_a_declared_side_channel(repo, first_repro):
    """A stage that imports a project module not in its deps would keep its cached output
    when that module changes: the trace of the real run finds it. Side channels (logging to
    MLflow, progress, timing, the runner) are declared in layout_rules.py, with the reason."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    src = (repo / "src").resolve()
    for name, stage in stages.items():
        trace = repo.parent / "imports" / f"{name}.txt"
        assert trace.exists(), f"stage {name} left no import trace"
        files = {Path(f).resolve() for f in trace.read_text().split()}
        imported = sorted(f.relative_to(repo.resolve()).as_posix() for f in files if f.is_relative_to(src))
        assert "src/mnist_codec/params.py" in imported  # the trace saw the project's modules
        side = [m for m, (of, _) in SIDE_CHANNELS.items() if name in of]
        missing = missing_deps([f for f in imported if f not in side], stage["deps"])
        assert not missing, f"stage {name} imports {missing}, which its deps in dvc.yaml do not list"


def imported_libraries(repo: Path, stage: str) -> set[str]:
    """The heavy libraries a stage's process imported, from its trace."""
    files = (repo.parent / "imports" / f"{stage}.txt").read_text().split()
    libs = {"torch", "mlflow", "sklearn", "matplotlib", "pandas", "_dynamo"}  # _dynamo: torch's compiler
    return {lib for lib in libs if any(f.endswith(f"/{lib}/__init__.py") for f in files)}


# What each stage's work needs; anything more is start-up time paid for nothing.
LIBRARIES = {
    "fetch": set(),
    "preprocess": set(),
    "report": {"matplotlib", "pandas"},
    "pca": {"torch", "mlflow", "pandas", "sklearn", "matplotlib"},
    "train_ae": {"torch", "mlflow", "pandas", "matplotlib"},
    "train_deep": {"torch", "mlflow", "pandas", "matplotlib"},
    "evaluate": {"torch", "mlflow", "pandas"},
}


def test_no_stage_imports_a_library_its_work_does_not_use(repo, first_repro):
    """fetch, preprocess and report load no torch and no MLflow (pandas comes with MLflow, and
    the report reads its table with it); only pca loads scikit-learn; evaluate draws nothing; no
    stage loads torch's compiler (its optimizer's guards did, 1.8 s a training stage)."""
    for stage, expected in LIBRARIES.items():
        assert imported_libraries(repo, stage) == expected, stage


def test_every_stage_records_its_own_work_and_its_whole_process(repo, first_repro):
    records = [json.loads(line) for line in (repo.parent / "timings.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == [
        "fetch",
        "preprocess",
        "pca",
        "train_ae",
        "train_deep",
        "evaluate",
        "report",
    ]
    work = {r["stage"]: set(r["work"]) for r in records}
    assert work == {
        "fetch": {"fetch"},
        "preprocess": {"preprocess"},
        "pca": {"fit", "scoring", "figures"},
        "train_ae": {"training", "scoring", "figures"},
        "train_deep": {"training", "scoring", "figures"},
        "evaluate": {"scoring", "figure data"},
        "report": {"figures"},
    }
    for r in records:
        assert 0 < sum(r["work"].values()) < r["seconds"], r


def test_every_stage_runs_and_writes_its_outputs(repo, first_repro):
    for stage in ("fetch", "preprocess", "pca", "train_ae", "train_deep", "evaluate", "report"):
        assert f"Running stage '{stage}'" in first_repro.stdout
    for rel in (
        "data/raw/train-images-idx3-ubyte.gz",
        "data/processed/train_x.npy",
        "models/pca.npz",
        "models/ae/index.json",
        "models/deep/deep_tanh/index.json",
        "reports/metrics.json",
        "reports/metrics_detail.json",
        "reports/comparison.md",
        "reports/comparison.csv",
        "reports/timings.json",
        "reports/report.html",
        "reports/figures/reconstructions.png",
        "reports/figures/pca_scatter.png",
        "reports/figures/codes_2d.png",
        "reports/figures/training_curves.png",
        "reports/figures/per_digit_mse.png",
        "reports/figures/mse_intervals.png",
    ):
        assert (repo / rel).is_file(), rel
    for codec_dir, curve_dir in (
        ("models/ae", "reports/curves/ae"),
        ("models/deep/deep_leaky_relu", "reports/curves/deep/deep_leaky_relu"),
    ):
        for r in range(N_SEEDS):  # a model, its record and its curve for every seed
            assert (repo / codec_dir / f"seed{r}.pt").is_file() and (repo / codec_dir / f"seed{r}.json").is_file()
            assert (repo / curve_dir / f"seed{r}.csv").is_file()
        seeds = json.loads((repo / codec_dir / "index.json").read_text())["seeds"]
        assert len(set(seeds)) == N_SEEDS
    assert "epoch 2/2 train_loss" in first_repro.stderr  # progress per epoch


def test_metrics_and_table(repo, first_repro):
    metrics = json.loads((repo / "reports/metrics_detail.json").read_text())
    assert list(metrics) == CODECS
    for name, m in metrics.items():
        assert set(m) == {"mse", "psnr", "code_size", "stored_numbers", "mse_digit", "seeds", "settings", "trained_on"}
        mse = m["mse"]
        assert mse["n"] == (1 if name == "pca" else N_SEEDS) and len(mse["per_seed"]) == mse["n"]
        assert 0 < mse["ci95_low"] <= mse["mean"] <= mse["ci95_high"] < 0.2
        assert mse["mean"] == pytest.approx(sum(mse["per_seed"]) / mse["n"])
        assert (mse["std"] > 0) == (name != "pca")  # seeds differ; PCA is deterministic
        assert m["psnr"]["n"] == mse["n"] and m["code_size"] == 32 and len(m["mse_digit"]) == 10
    assert "seconds" not in json.dumps(metrics)  # timings live in their own file
    table = (repo / "reports/comparison.md").read_text()
    for name in ("PCA", "AE (1 layer)", "Deep AE (ReLU)", "Deep AE (Tanh)", "Deep AE (LeakyReLU)"):
        assert f"| {name} |" in table
    assert "95% confidence interval" in table and " ± " in table
    html = (repo / "reports/report.html").read_text()
    assert html.count("data:image/png;base64,") == 7 and "<script" not in html  # 6 figures and the sweep's
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing loaded from elsewhere: renders offline
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)
    headline = shown[""]["data"]["reports/metrics.json"]["data"]  # four numbers a codec: what a person compares
    assert {c: sorted(h) for c, h in headline.items()} == {c: ["mse", "mse_ci95", "n_seeds", "psnr"] for c in CODECS}
    plots = json.loads(sh(repo, "dvc", "plots", "show", "--json").stdout)["data"]
    assert sorted(plots) == sorted(
        f"reports/curves/{folder}/seed{r}.csv"
        for r in range(N_SEEDS)
        for folder in ("ae", "deep/deep_relu", "deep/deep_tanh", "deep/deep_leaky_relu")
    )
    assert all('"eval_loss"' in json.dumps(p) and '"train_loss"' in json.dumps(p) for p in plots.values())


def test_mlflow_has_a_run_per_codec_with_a_child_per_seed(repo, first_repro):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mnist-codec")
    runs = client.search_runs([exp.experiment_id])
    # a top-level run is named by the commit it ran (the copy's code is its commit's: not -dirty)
    branch = sh(repo, "git", "symbolic-ref", "--short", "HEAD").stdout.strip()
    source = f" ({branch}@{sh(repo, 'git', 'rev-parse', '--short=7', 'HEAD').stdout.strip()})"
    assert all(r.info.run_name.endswith(source) for r in runs if "mlflow.parentRunId" not in r.data.tags)
    by_name = {r.info.run_name.removesuffix(source): r for r in runs}
    children = [f"{c} seed{r}" for c in CODECS[1:] for r in range(N_SEEDS)]
    assert sorted(by_name) == sorted([*CODECS, "evaluate", *children]) and len(runs) == len(by_name)
    assert len({r.data.tags["mnist_codec.pipeline"] for r in runs}) == 1  # one execution, found together
    for name in CODECS + children:
        run = by_name[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mnist_codec.device"].startswith("cpu")
        assert run.data.tags["mnist_codec.dvc_exp"] == "workspace"
        assert len(run.data.tags["mnist_codec.data_sha256"]) == 64
        assert run.data.params["latent_dim"] == "32"
    for codec in CODECS[1:]:
        parent = by_name[codec]
        assert "mlflow.parentRunId" not in parent.data.tags
        # the codec's figures, every seed in each, on its own run
        assert {"reconstructions.png", "loss_curve.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
        # the codec's headline numbers, as metrics.json has them, on its own run
        headline = json.loads((repo / "reports/metrics.json").read_text())[codec]
        assert {k: parent.data.metrics[k] for k in ("mse", "mse_ci95", "psnr")} == pytest.approx(
            {k: headline[k] for k in ("mse", "mse_ci95", "psnr")}, rel=1e-12
        )
        seeds = set()
        for r in range(N_SEEDS):
            child = by_name[f"{codec} seed{r}"]
            assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
            assert child.data.tags["mnist_codec.replicate"] == str(r)
            seeds.add(child.data.tags["mnist_codec.seed"])
            assert child.data.params["model_seed"] == child.data.tags["mnist_codec.seed"]
            assert len(client.get_metric_history(child.info.run_id, "train_loss")) == 2
            models = client.search_logged_models(
                experiment_ids=[exp.experiment_id], filter_string=f"source_run_id = '{child.info.run_id}'"
            )
            assert len(models) == 1, child.info.run_name
        assert len(seeds) == N_SEEDS
    pca = by_name["pca"]
    assert len(client.get_metric_history(pca.info.run_id, "train_loss")) == 1
    assert by_name["deep_tanh seed1"].data.params["activation"] == "tanh"
    evaluate = by_name["evaluate"]
    assert {"comparison.md", "comparison.json"} <= {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert evaluate.data.tags["mnist_codec.run.ae"] == by_name["ae"].info.run_id
    assert evaluate.data.metrics == {}  # its summary is a table (mlflow.log_table), off the Chart view's front
    assert "comparison.json" in evaluate.data.tags["mlflow.loggedArtifacts"]  # a table: the UI lists it as one
    table = json.loads(Path(client.download_artifacts(evaluate.info.run_id, "comparison.json")).read_text())
    assert [row[0] for row in table["data"]] == CODECS and "mse_mean" in table["columns"]
    record = json.loads((repo / "models/ae/seed1.json").read_text())
    assert record["mlflow_run_id"] == by_name["ae seed1"].info.run_id
    assert (repo / "mlruns").is_dir()


def registry(repo: Path):
    """(versions sorted by number, champion version) of the project's store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    versions = sorted(client.search_model_versions("name = 'mnist-codec'"), key=lambda v: int(v.version))
    return versions, client.get_model_version_by_alias("mnist-codec", "champion")


def test_every_model_is_registered_and_the_best_codec_is_champion(repo, first_repro):
    versions, champion = registry(repo)
    assert len(versions) == 1 + (len(CODECS) - 1) * N_SEEDS
    assert {v.tags["mnist_codec.codec"] for v in versions} == set(CODECS)
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert champion.tags["mnist_codec.codec"] == min(metrics, key=lambda c: metrics[c]["mse"])
    assert "champion: promoted: no champion yet" in first_repro.stdout


# that every registered version, the champion among them, loads in a fresh process with the
# evaluation's numbers is held once, on the smoke run: tests/test_registry.py


def test_second_repro_runs_nothing(repo, first_repro):
    again = sh(repo, "dvc", "repro")
    assert "Running stage" not in again.stdout


def dvc_status(repo: Path) -> dict:
    """What ``dvc status --json`` prints, from DVC's own API in this process (the command's
    ``Repo.status`` under the repo lock, without a process start for each of the ~100 calls)."""
    from dvc.repo import Repo, lock_repo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DVC_SITE_CACHE_DIR", project_env(repo)["DVC_SITE_CACHE_DIR"])  # DVC's state stays in the temp dir
        mp.chdir(repo)  # DVC names the stages relative to the working directory, as the command does
        with Repo(str(repo)) as dvc, lock_repo(dvc):
            return dvc.status()


def changed_stages(repo: Path, rel: str) -> set[str]:
    """The stages ``dvc status`` marks changed after one line is added to ``rel``."""
    path = repo / rel
    original = path.read_bytes()
    edit = b"{# edited #}\n" if rel.endswith(".j2") else b"# edited\n"
    try:
        path.write_bytes(original + edit)
        return set(dvc_status(repo))
    finally:
        path.write_bytes(original)


def test_an_edit_reruns_only_the_stages_whose_outputs_it_can_change(repo, first_repro):
    """Every module of the package, every stage script and the benchmark, edited one at a
    time in the copy: DVC's own verdict is the one layout_rules.STATUS states."""
    assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}  # the command itself, once
    files = sorted(
        {p.relative_to(repo).as_posix() for p in (repo / "src/mnist_codec").rglob("*") if p.suffix in (".py", ".j2")}
        | {p.relative_to(repo).as_posix() for p in (repo / "stages").glob("*.py")}
        | {"benchmarks/bench_pipeline.py"}
        | {p.relative_to(repo).as_posix() for p in (repo / "benchmarks/bench").glob("*.py")}
    )
    unclassified = [f for f in files if f not in STATUS]
    assert not unclassified, f"add these to tests/layout_rules.py STATUS: {unclassified}"
    verdicts = {f: changed_stages(repo, f) for f in files}
    wrong = {f: (sorted(v), sorted(STATUS[f])) for f, v in verdicts.items() if v != STATUS[f]}
    assert not wrong, f"(dvc status, the rule) differ for {wrong}"
    for f, v in verdicts.items():  # the rule itself: what each kind of module may and must re-run
        for prefix, most in AT_MOST.items():
            assert not f.startswith(prefix) or v <= most, (f, v)
        for prefix, least in AT_LEAST.items():
            assert not f.startswith(prefix) or v >= least, (f, v)
    assert dvc_status(repo) == {}


@pytest.mark.parametrize(
    ("key", "value", "stale"),
    [
        ("latent_dim", 16, ["pca", "train_ae", "train_deep"]),
        ("activation", "tanh", ["train_deep"]),
        ("seed", 7, ["train_ae", "train_deep"]),
        ("n_seeds", 2, ["train_ae", "train_deep"]),
        ("train.epochs", 3, ["train_ae", "train_deep"]),
        ("evaluate.n_examples", 4, ["evaluate"]),
        ("data.protocol", "notebook", ["preprocess"]),
    ],
)
def test_each_param_invalidates_only_the_stages_that_read_it(repo, first_repro, key, value, stale):
    path = repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    section, _, sub = key.rpartition(".")
    (params[section] if section else params)[sub] = value
    try:
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        status = dvc_status(repo)
        assert sorted(status) == sorted(stale)
    finally:
        path.write_text(original)


def test_experiment_with_one_activation_reuses_pca_and_ae(repo, first_repro):
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    exp = sh(repo, "dvc", "exp", "run", "-S", "activation=tanh")
    out = exp.stdout
    for cached in ("fetch", "preprocess", "pca", "train_ae"):
        assert f"Running stage '{cached}'" not in out
    for ran in ("train_deep", "evaluate", "report"):
        assert f"Running stage '{ran}'" in out
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert list(metrics) == ["pca", "ae", "deep_tanh"]
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    assert shown  # the experiment is listed


def test_experiments_register_tagged_and_a_worse_one_does_not_take_the_alias(repo, first_repro):
    before, champion = registry(repo)
    exp = sh(repo, "dvc", "exp", "run", "-S", "train.epochs=1", "-n", "one-epoch")
    assert "champion: kept" in exp.stdout
    after, still = registry(repo)
    assert still.version == champion.version
    new = [v for v in after if int(v.version) > int(before[-1].version)]
    # the AE and deep_tanh (the workspace's activation since the last experiment) retrained; PCA's
    # inputs did not change, so DVC did not rerun it
    assert sorted(v.tags["mnist_codec.codec"] for v in new) == ["ae"] * N_SEEDS + ["deep_tanh"] * N_SEEDS
    assert {v.tags["mnist_codec.dvc_exp"] for v in new} == {"one-epoch"}
    assert all(v.tags["mnist_codec.protocol"] == "holdout" for v in new)
    # the tanh-only experiment retrained deep_tanh with the inputs of the first run: no duplicates
    assert len([v for v in before if v.tags["mnist_codec.codec"] == "deep_tanh"]) == N_SEEDS
