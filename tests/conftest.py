"""Shared fixtures: tiny synthetic MNIST-shaped data, built in memory."""

from __future__ import annotations

import gzip
import http.server
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from mnist_codec.loopback import keep_ray_on_loopback

from services import copy_project as project_copy  # noqa: F401 -- the tests take it from here

REPO = Path(__file__).resolve().parents[1]
if REPO.name == "mutants":  # make mutation runs the tests from mutmut's copy, mutants/: the repository is above it
    REPO = REPO.parent

# Ray reads these when it is imported: every Ray node a test starts stays on 127.0.0.1 (on Linux
# Ray would take the machine's network address otherwise), and Ray sends no usage statistics.
keep_ray_on_loopback()
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


class Planted:
    """Unpickling this creates the file at ``path``: the proof that a pickle was executed
    (tests/faults/test_security.py checks that it does, and that no loader lets it)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Serialise a uint8 array as an IDX file with the given magic number."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images of blurry bars whose position depends on the label, and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = np.zeros((n, 28, 28), dtype=np.float32)
    for i, d in enumerate(labels):
        images[i, 4 + 2 * d : 8 + 2 * d, 6:22] = 1.0
        images[i, 6:22, 4 + 2 * ((d + 3) % 10) : 7 + 2 * ((d + 3) % 10)] = 0.7
    images += rng.normal(0, 0.05, images.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels


def write_raw_dir(folder: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """A data/raw-like folder of the four gzipped IDX files, with synthetic content."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_digits(n, seed)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, 2051)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, 2049)))
    return folder


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return write_raw_dir(tmp_path / "raw")


@pytest.fixture
def digits() -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (400, 784) in [0, 1], y uint8 (400,))."""
    images, labels = synthetic_digits(400, seed=3)
    return images.reshape(400, 784).astype(np.float32) / 255.0, labels


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return uri


@pytest.fixture(scope="session")
def good_mirror(tmp_path_factory) -> Path:
    """A mirror folder of the real MNIST files, gzipped differently from the bundled copy."""
    from mnist_codec.data import mnist

    folder = tmp_path_factory.mktemp("mirror")
    for f in mnist.RAW_FILES:
        raw = gzip.decompress((mnist.bundled_dir() / f"{f.name}.gz").read_bytes())
        (folder / f"{f.name}.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    return folder


class MirrorServer:
    """An HTTP server on 127.0.0.1 serving a folder; the test that starts it stops it."""

    def __init__(self, folder: Path):
        handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def full_params(overrides: dict | None = None) -> dict:
    """The project's params.yaml as a dict, with ``overrides`` ({'seed': 1, 'train': {'epochs': 2}})
    merged in: what a stage script needs, since a stage refuses a params file missing a key."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key].update(value)
        else:
            params[key] = value
    return params


def params_text(overrides: dict | None = None) -> str:
    """:func:`full_params` as the text of a params.yaml."""
    import yaml

    return yaml.safe_dump(full_params(overrides), sort_keys=False)


# --- a throw-away copy of the project, for tests that run DVC --------------------------------

# The profile of the tests that check plumbing rather than numbers (DVC's locks and queue, the
# team's services, MLflow's records): two seeds, one deep codec, 1,000 training images, 2 epochs.
TINY = {
    "n_seeds": 2,
    "activation": ["relu"],
    "data": {"train_limit": 1000, "eval_limit": 300},
    "train": {"epochs": 2},
    "evaluate": {"n_projection": 200},
}


def clean_env() -> dict[str, str]:
    """This process's environment without MLflow and DVC settings (a test's store stays its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}


def project_env(root: Path) -> dict[str, str]:
    """Environment for DVC and stage processes in a project copy at ``root``."""
    env = clean_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(root / "src")  # the copy's code, not the checkout's
    env["DVC_SITE_CACHE_DIR"] = str(root.parent / "dvc-site-cache")  # keep DVC's state in the temp dir
    env["DVC_NO_ANALYTICS"] = "1"
    for who in ("AUTHOR", "COMMITTER"):  # dvc exp run commits; do not depend on a global git identity
        env[f"GIT_{who}_NAME"] = "mnist-codec tests"
        env[f"GIT_{who}_EMAIL"] = "tests@mnist-codec.invalid"
    return env


def sh(root: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=root, env=project_env(root), capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def store_runs(root: Path, stage: str | None = None) -> tuple[list, object]:
    """(runs, client) of the project's own MLflow store at ``root``, optionally of one stage."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mnist-codec")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    if stage is not None:
        runs = [r for r in runs if r.data.tags.get("mnist_codec.stage") == stage]
    return runs, client


def drain_queue(root: Path, env: dict[str, str] | None = None, timeout: float = 900) -> dict[str, str | None]:
    """Wait until no experiment of ``root`` is queued or running, stop the workers, and return
    each experiment's state (``dvc.api.exp_show``'s State: Success, Failed, ...)."""
    from mnist_codec.experiments import exps
    from mnist_codec.experiments.sweep import wait_for_queue

    full = {**project_env(root), **(env or {})}
    wait_for_queue(root, poll=3, timeout=timeout)
    subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=root, env=full, capture_output=True, timeout=120)
    return {e.name: e.state for e in exps.experiments(exps.show(root))}


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> Path:
    """The whole pipeline run once in-process (tests/smoke.py): a project with every stage's
    outputs, its models trained on 2 seeds, evaluated and registered in its own MLflow store."""
    import smoke as run

    root = tmp_path_factory.mktemp("smoke") / "project"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in run.env_for(root).items():
            mp.setenv(key, value)
        mp.chdir(root)
        run.run_all(root, run.params_for())
    return root


# --- the order `make test-full` hands the test files to pytest-xdist's workers ---------------

# The files whose tests cost most (make test-full's durations on a 2-core AMD EPYC), heaviest
# first: they start first, so that no long file is left running alone at the end of the run.
HEAVY_FIRST = (
    "tests/test_team.py",
    "tests/test_gate_e2e.py",
    "tests/test_tune.py",
    "tests/test_cluster.py",
    "tests/faults/test_dvc_faults.py",
    "tests/test_frontier.py",
    "tests/test_pipeline_e2e.py",
    "tests/test_sweep.py",
    "tests/test_compare.py",
    "tests/test_gate_guard_e2e.py",
    "tests/test_registry.py",
    "tests/test_serve_ray.py",
    "tests/faults/test_training_faults.py",
)


def heaviness_rank(item: pytest.Item) -> int:
    """Where the test's file stands in HEAVY_FIRST; every other file after them."""
    path = item.nodeid.split("::")[0]
    return HEAVY_FIRST.index(path) if path in HEAVY_FIRST else len(HEAVY_FIRST)


def pytest_configure(config: pytest.Config) -> None:
    """Under `make mutation`, mutmut forks a process per mutant from the one that ran the tests
    once, its heap holding torch and MLflow: frozen, the garbage collector of each fork passes
    over it (a mutant's run took 40% less on a 2-core AMD EPYC)."""
    if "MUTANT_UNDER_TEST" in os.environ:
        import gc

        gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The heaviest files first (`make test-full` runs `--dist loadfile --no-loadscope-reorder`:
    each file on one worker, where its module-scoped fixtures are built once, in this order).
    Under `make mutation` (tests/mutation.py), the fastest tests first instead: mutmut stops at
    a mutant's first failing test, so a mutant a quick test kills costs only that test."""
    items.sort(key=heaviness_rank)  # stable: the collection's order within a rank
    if "MUTANT_UNDER_TEST" in os.environ:
        items.sort(key=mutation_cost())


def mutation_cost():
    """A test's time in mutmut's stats run (mutants/mutmut-stats.json), unknown ones last."""
    import json

    try:
        durations = json.loads((REPO / "mutants" / "mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        durations = {}
    return lambda item: durations.get(item.nodeid, float("inf"))


@pytest.fixture(scope="session")
def registered(smoke) -> Path:
    """The smoke run's project: every codec trained on 2 seeds, evaluated and registered."""
    return smoke


@pytest.fixture
def registry_client(registered, monkeypatch):
    """An MlflowClient of the smoke run's store, with this process pointed at it (its
    environment, its folder, MLflow's fluent API)."""
    import mlflow

    from smoke import env_for

    for key, value in env_for(registered).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(registered)
    uri = f"sqlite:///{registered / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # the fluent API too: an earlier test's runs may have set another store
    return mlflow.MlflowClient(uri)
