"""The Model Registry, the champion rule and the served codec, on a real MLflow store.

The pipeline's own stage functions run in-process on a few hundred synthetic digits; the
scoring server (``mlflow models serve``) and the ``mnist-codec`` command run as real
processes on 127.0.0.1, and the server is stopped by its PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_codec.data import prepare, splits
from mnist_codec.pipeline import train_ae as train_ae_stage
from mnist_codec.tracking import fingerprint, registry
from mnist_codec.tracking import tags as ttags

from conftest import REPO, clean_env, full_params
from services import Service, free_port, http_ok, post
from smoke import CODECS, env_for, make_project, params_for
from smoke import train_and_evaluate as run_pipeline


def versions(client) -> list:
    return sorted(client.search_model_versions(f"name = '{registry.REGISTERED_MODEL}'"), key=lambda v: int(v.version))


@pytest.fixture(scope="module")
def project(smoke):
    """The smoke run's project: every codec trained on 2 seeds, evaluated and registered."""
    return smoke


@pytest.fixture
def client(project, monkeypatch):
    import mlflow

    for key, value in env_for(project).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(project)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # the fluent API too: an earlier test's runs may have set another store
    return mlflow.MlflowClient(uri)


def eval_split(root: Path) -> np.ndarray:
    return splits.load_split(root / "data/processed", "eval")[0]


# --- registration and lineage --------------------------------------------------------------


def test_every_trained_model_is_a_version_with_tags_that_tie_it_back(project, client):
    vs = versions(client)
    assert len(vs) == 1 + 2 + 2  # PCA once, each autoencoder on both seeds
    meta = splits.read_meta(project / "data/processed")
    commit = ttags.git_commit()
    by_codec = {}
    for v in vs:
        t = v.tags
        by_codec.setdefault(t["mnist_codec.codec"], []).append(v)
        assert t["mnist_codec.latent_dim"] == "32" and t["mnist_codec.protocol"] == "holdout"
        assert t["mnist_codec.data_sha256"] == meta["splits"]["train"]["sha256"]
        assert t["mnist_codec.eval_sha256"] == meta["splits"]["eval"]["sha256"]
        assert t["mnist_codec.git_commit"] == commit and t["mnist_codec.dvc_exp"] == "workspace"
        assert float(t["mnist_codec.eval_mse"]) > 0 and len(t["mnist_codec.fingerprint"]) == 64
        assert v.run_id == t["mnist_codec.run_id"]
    assert sorted(by_codec) == sorted(CODECS)
    assert sorted(v.tags["mnist_codec.seed"] for v in by_codec["ae"]) == sorted(
        str(json.loads((project / f"models/ae/seed{r}.json").read_text())["seed"]) for r in range(2)
    )
    record = json.loads((project / "models/ae/seed1.json").read_text())
    assert (
        client.get_model_version(registry.REGISTERED_MODEL, record["model_version"]).run_id == record["mlflow_run_id"]
    )


def test_training_runs_show_their_datasets_and_source(project, client):
    record = json.loads((project / "models/deep/deep_relu/seed0.json").read_text())
    run = client.get_run(record["mlflow_run_id"])
    meta = splits.read_meta(project / "data/processed")
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["mnist-holdout-eval", "mnist-holdout-train"]
    train = inputs["mnist-holdout-train"]
    assert train.dataset.digest == meta["splits"]["train"]["sha256"][:32]
    assert "train_x.npy" in train.dataset.source
    assert {t.key: t.value for t in train.tags}["mlflow.data.context"] == "training"
    assert run.data.tags["mlflow.source.git.commit"] == ttags.git_commit()
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.source.name"]


def test_the_best_codec_is_champion_and_the_decision_is_recorded(project, client):
    metrics = json.loads((project / "reports/metrics_detail.json").read_text())
    best = min(metrics, key=lambda c: metrics[c]["mse"]["mean"])
    champion = client.get_model_version_by_alias(registry.REGISTERED_MODEL, registry.CHAMPION)
    assert champion.tags["mnist_codec.codec"] == best
    assert champion.tags["mnist_codec.promotion"].startswith("promoted: no champion yet")
    assert float(champion.tags["mnist_codec.codec_mse_mean"]) == pytest.approx(metrics[best]["mse"]["mean"])
    runs = client.search_runs(
        [client.get_experiment_by_name("mnist-codec").experiment_id],
        filter_string="tags.`mnist_codec.stage` = 'evaluate'",
    )
    assert runs[0].data.tags["mnist_codec.champion.promoted"] == "true"
    assert runs[0].data.tags["mnist_codec.champion.candidate"] == f"mnist-codec/{champion.version}"


def test_a_fresh_process_loads_each_version_with_the_evaluations_numbers(project, client):
    metrics = json.loads((project / "reports/metrics_detail.json").read_text())
    script = (
        "import json, sys, mlflow, numpy as np\n"
        "from mnist_codec.data import splits\n"
        "x = splits.load_split('data/processed', 'eval')[0].astype(np.float64)\n"
        "out = {}\n"
        "for v in sys.argv[1:]:\n"
        "    m = mlflow.pyfunc.load_model(f'models:/mnist-codec/{v}')\n"
        "    r = m.predict(x.astype(np.float32)).astype(np.float64)\n"
        "    out[v] = float(((r - x) ** 2).mean())\n"
        "print(json.dumps(out))\n"
    )
    vs = versions(client)
    proc = subprocess.run(
        [sys.executable, "-c", script, *[str(v.version) for v in vs]],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    for v in vs:
        codec, replicate = v.tags["mnist_codec.codec"], int(v.tags.get("mnist_codec.replicate", 0))
        assert served[str(v.version)] == pytest.approx(metrics[codec]["mse"]["per_seed"][replicate], abs=1e-6)


def test_a_planted_pickle_is_never_executed_when_the_champion_loads(project, client, tmp_path):
    import mlflow

    champion = client.get_model_version_by_alias(registry.REGISTERED_MODEL, registry.CHAMPION)
    model_dir = Path(mlflow.artifacts.download_artifacts(champion.source, dst_path=str(tmp_path / "copy")))
    marker = tmp_path / "pickle-ran"
    import pickle

    from conftest import Planted

    # where a cloudpickled PythonModel, a pickled flavour and a stray artifact would sit
    for rel in ("python_model.pkl", "model.pkl", "artifacts/weights.pkl", "data/model.pth"):
        (model_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / rel).write_bytes(pickle.dumps(Planted(str(marker))))
    script = (
        "import sys, mlflow, numpy as np\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "print(m.predict(np.full((1, 784), 0.5, np.float32)).shape)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(model_dir)],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(1, 784)" in proc.stdout
    assert not marker.exists()


def test_retraining_with_the_same_inputs_registers_no_duplicate(project, client):
    before = [v.version for v in versions(client)]
    first = json.loads((project / "models/ae/seed0.json").read_text())
    train_ae_stage.run(params_for(), project / "data/processed", project / "models/ae", project / "reports/curves/ae")
    again = json.loads((project / "models/ae/seed0.json").read_text())
    assert [v.version for v in versions(client)] == before
    assert again["model_version"] == first["model_version"] and again["mlflow_run_id"] != first["mlflow_run_id"]
    assert (
        client.get_run(again["mlflow_run_id"]).data.tags["mnist_codec.model_version"]
        == f"mnist-codec/{first['model_version']}"
    )


def test_the_fingerprint_covers_the_code_that_makes_a_model_and_nothing_else(tmp_path):
    """Editing the tracking server, the command or a figure leaves every fingerprint as it was
    (a forced re-run registers no new version); editing the code that computes weights (the
    codecs, the trainings' pipeline modules) changes them."""
    import shutil

    shutil.copytree(
        REPO / "src" / "mnist_codec", tmp_path / "mnist_codec", ignore=shutil.ignore_patterns("__pycache__", "datasets")
    )

    def digest() -> str:
        out = subprocess.run(
            [sys.executable, "-c", "from mnist_codec.tracking.fingerprint import code_digest; print(code_digest())"],
            env={**clean_env(), "PYTHONPATH": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.strip()

    def touch(rel: str) -> None:
        with open(tmp_path / "mnist_codec" / rel, "a") as fh:
            fh.write("# edited\n")

    first = digest()
    for rel in (
        "tracking/server.py",
        "cli/results.py",
        "reporting/plots.py",
        "tracking/runs.py",
        "pipeline/evaluate.py",
    ):
        touch(rel)
        assert digest() == first, rel
    for rel in ("codecs/models.py", "codecs/trainer.py", "pipeline/training.py", "pipeline/pca.py", "machine.py"):
        touch(rel)
        assert digest() != first, rel
        first = digest()


def test_the_precision_is_part_of_both_fingerprints():
    """A bf16 model is another model: it resumes no fp32 checkpoint and is registered as its own version."""
    from types import SimpleNamespace

    from mnist_codec import params as P
    from mnist_codec.pipeline import training

    fp32 = P.validate(full_params())
    bf16 = P.validate(full_params({"train": {"precision": "bf16"}}))
    target = training.CodecTarget("ae", {"kind": "ae", "latent_dim": 32}, {}, Path("m"), Path("c"))
    assert training.fingerprint(fp32, target, 1, "d") != training.fingerprint(bf16, target, 1, "d")
    assert training.fingerprint(fp32, target, 1, "d") == training.fingerprint(P.validate(full_params()), target, 1, "d")
    run = SimpleNamespace(tags={}, run_id="r")

    def tag(p) -> str:
        return fingerprint.version_tags(run, target.spec, 0.01, "e", training.made_of(p, 1, "d"))[
            fingerprint.FINGERPRINT_TAG
        ]

    assert tag(fp32) != tag(bf16)


# --- the promotion rule over three runs ----------------------------------------------------


@pytest.mark.full
def test_a_better_run_takes_the_alias_and_a_worse_one_does_not(tmp_path, monkeypatch):
    import mlflow

    root = make_project(tmp_path / "p")
    for key, value in env_for(root).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    few, full = tmp_path / "few", root / "data/processed"  # the same evaluation images, fewer training ones
    prepare.preprocess(root / "data/raw", few, "holdout", train_limit=40)

    def champion():
        return client.get_model_version_by_alias(registry.REGISTERED_MODEL, registry.CHAMPION)

    run_pipeline(root, params_for(train={"epochs": 1}), few)  # weak: 40 images, one epoch
    weak = champion()
    n_weak = len(versions(client))
    run_pipeline(root, params_for(train={"epochs": 3}), full)  # strong: all 300 images
    strong = champion()
    assert strong.version != weak.version
    assert (
        strong.tags["mnist_codec.promotion"].startswith("promoted:")
        and "wholly below" in strong.tags["mnist_codec.promotion"]
    )
    n_strong = len(versions(client))
    assert n_strong > n_weak
    run_pipeline(root, params_for(train={"epochs": 1}), few)  # the weak run again: same inputs, same versions
    assert len(versions(client)) == n_strong
    assert champion().version == strong.version
    weak_again = client.get_model_version(registry.REGISTERED_MODEL, weak.version)
    assert weak_again.tags["mnist_codec.promotion"].startswith("not promoted:")
    # a variant with another code size registers but never competes
    run_pipeline(root, params_for(latent_dim=16, train={"epochs": 1}), full)
    assert len(versions(client)) > n_strong and champion().version == strong.version
    evaluate = client.search_runs(
        [client.get_experiment_by_name("mnist-codec").experiment_id],
        filter_string="tags.`mnist_codec.stage` = 'evaluate'",
        order_by=["attributes.start_time DESC"],
    )[0]
    assert evaluate.data.tags["mnist_codec.champion.promoted"] == "false"
    assert "latent_dim 16 is not the champion's 32" in evaluate.data.tags["mnist_codec.champion.reason"]


# --- the command line ----------------------------------------------------------------------


def mnist_codec(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "mnist-codec"), *args],
        cwd=root,
        env=env_for(root),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_encode_and_decode_a_png_through_the_champion(project, client, tmp_path):
    import mlflow

    from mnist_codec.serving import digits

    x = eval_split(project)[:1]
    digits.write_digit_png(tmp_path / "digit.png", x[0])
    enc = mnist_codec(project, "encode", str(tmp_path / "digit.png"))
    assert enc.returncode == 0, enc.stderr
    code = np.array(enc.stdout.split(), dtype=np.float32)
    model = mlflow.pyfunc.load_model("models:/mnist-codec@champion")
    pixels = digits.read_digit_png(tmp_path / "digit.png")  # what the PNG holds (8-bit)
    assert np.allclose(code, model.predict(pixels, params={"mode": "encode"})[0], atol=1e-6)
    dec = mnist_codec(project, "decode", "--out", str(tmp_path / "back.png"), stdin=enc.stdout)
    assert dec.returncode == 0, dec.stderr
    back = digits.read_digit_png(tmp_path / "back.png")
    expected = np.clip(model.predict(code[None, :], params={"mode": "decode"}), 0, 1)  # a PNG holds [0, 1]
    assert np.abs(back - expected).max() <= 0.5 / 255 + 1e-6
    version = str(versions(client)[-1].version)
    by_number = mnist_codec(project, "encode", str(tmp_path / "digit.png"), "--model", version)
    assert by_number.returncode == 0 and f"models:/mnist-codec/{version}" in by_number.stderr


def test_the_command_line_refuses_bad_input_clearly(project, client, tmp_path):
    from PIL import Image

    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    big = mnist_codec(project, "encode", str(tmp_path / "big.png"))
    assert big.returncode == 2 and "image is 64x64 pixels; the codec takes 28x28" in big.stderr
    short = mnist_codec(project, "decode", "--out", str(tmp_path / "x.png"), "1", "2")
    assert short.returncode == 2 and "the model's code has 32 numbers, got 2" in short.stderr
    assert not (tmp_path / "x.png").exists()
    missing = mnist_codec(project, "encode", str(tmp_path / "big.png"), "--model", "999")
    assert missing.returncode == 2  # the size check comes first
    Image.new("L", (28, 28)).save(tmp_path / "ok.png")
    missing = mnist_codec(project, "encode", str(tmp_path / "ok.png"), "--model", "999")
    assert missing.returncode == 2 and "models:/mnist-codec/999: not found" in missing.stderr
    assert "Traceback" not in missing.stderr


# --- the scoring server --------------------------------------------------------------------


def post_json(url: str, body: str) -> tuple[int, dict]:
    reply = post(url, body, timeout=120)
    return reply.status, reply.json()


@pytest.fixture(scope="module")
def server(project):
    """``mnist-codec serve`` (``make serve-model``: ``mlflow models serve`` of the champion) on a
    free port, from a shell whose PATH lacks the venv, as without an activated venv; stopped by its PID."""
    port = free_port()
    env = {**env_for(project), "PATH": "/usr/bin:/bin"}
    service = Service(
        "the scoring server",
        [str(Path(sys.executable).parent / "mnist-codec"), "serve", "--port", str(port)],
        project / "scoring-server.log",
        env=env,
        cwd=project,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        service.wait_until(lambda: http_ok(f"{url}/ping"), timeout=120)
        yield url + "/invocations"
    finally:
        service.stop(timeout=30)  # the server and its uvicorn worker: the whole group


def test_the_server_answers_like_the_model_in_process(project, server):
    import mlflow

    x = eval_split(project)[:16]
    model = mlflow.pyfunc.load_model("models:/mnist-codec@champion")
    status, body = post_json(server, json.dumps({"inputs": x.tolist()}))
    assert status == 200
    assert np.allclose(np.array(body["predictions"]), model.predict(x), atol=1e-6)
    status, body = post_json(server, json.dumps({"inputs": x.tolist(), "params": {"mode": "encode"}}))
    codes = np.array(body["predictions"], dtype=np.float32)
    assert status == 200 and codes.shape == (16, 32)
    assert np.allclose(codes, model.predict(x, params={"mode": "encode"}), atol=1e-6)
    status, body = post_json(server, json.dumps({"inputs": codes.tolist(), "params": {"mode": "decode"}}))
    assert status == 200 and np.allclose(np.array(body["predictions"]), model.predict(x), atol=1e-5)


ROW = "[" + ",".join(["0.5"] * 783)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (json.dumps({"inputs": [[0.5] * 783]}), "expected 784 pixels per row, got 783"),
        (json.dumps({"inputs": [[0.5] * 785]}), "expected 784 pixels per row, got 785"),
        ('{"inputs": [' + ROW + ",NaN]]}", "NaN or infinite (first at row 0, column 783)"),
        ('{"inputs": [' + ROW + ",Infinity]]}", "NaN or infinite"),
        (json.dumps({"inputs": [[1.5] * 784]}), "pixels must lie in [0, 1]"),
        (json.dumps({"inputs": [["0.5"] * 783 + ["dark"]]}), "could not convert string to float: 'dark'"),
        (json.dumps({"inputs": []}), "SCHEMA_ENFORCEMENT_FAILED"),  # MLflow's own check answers first
        (json.dumps({"inputs": [[0] * 784] * 10_001}), "batch of 10001 rows is over the limit of 10000"),
        ('{"inputs": [[0.5, 0.5', "valid JSON"),
        (json.dumps({"inputs": [[0.5] * 784], "params": {"mode": "compress"}}), "mode 'compress' is not one of"),
        (json.dumps({"inputs": [[0.5] * 784], "params": {"mode": "decode"}}), "expected 32 code values per row"),
    ],
)
def test_each_bad_request_gets_a_4xx_naming_it_and_the_server_keeps_serving(server, body, says):
    status, answer = post_json(server, body)
    assert 400 <= status < 500, answer
    assert says in json.dumps(answer)
    ok, good = post_json(server, json.dumps({"inputs": [[0.5] * 784]}))
    assert ok == 200 and len(good["predictions"][0]) == 784


def test_the_docs_curl_commands_work_as_written(project, server):
    from conftest import REPO

    page = (REPO / "docs/mlflow.md").read_text()
    block = page.split("In another shell, send one digit", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    port = server.split(":")[2].split("/")[0]
    script = block.replace("127.0.0.1:5001", f"127.0.0.1:{port}").replace(".venv/bin/python", sys.executable)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    code = json.loads((project / "code.json").read_text())["predictions"]
    assert len(code) == 1 and len(code[0]) == 32
    decoded = json.loads(proc.stdout[proc.stdout.rindex('{"predictions"') :])["predictions"]
    assert len(decoded) == 1 and len(decoded[0]) == 784  # PCA, linear, may step a little outside [0, 1]
