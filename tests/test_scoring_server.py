"""The scoring server (``mnist-codec serve``, ``make serve-model``: ``mlflow models serve`` of the
champion) as a real process on 127.0.0.1, stopped by its PID: it answers as the model does in
process, refuses each bad request with a 4xx naming it and keeps serving, and the docs' curl
commands work as written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_codec.data import splits

from conftest import REPO
from services import Service, free_port, http_ok, post
from smoke import env_for


def eval_split(root: Path) -> np.ndarray:
    return splits.load_split(root / "data/processed", "eval")[0]


def post_json(url: str, body: str) -> tuple[int, dict]:
    reply = post(url, body, timeout=120)
    return reply.status, reply.json()


@pytest.fixture(scope="module")
def server(registered):
    """``mnist-codec serve`` (``make serve-model``: ``mlflow models serve`` of the champion) on a
    free port, from a shell whose PATH lacks the venv, as without an activated venv; stopped by its PID."""
    port = free_port()
    env = {**env_for(registered), "PATH": "/usr/bin:/bin"}
    service = Service(
        "the scoring server",
        [str(Path(sys.executable).parent / "mnist-codec"), "serve", "--port", str(port)],
        registered / "scoring-server.log",
        env=env,
        cwd=registered,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        service.wait_until(lambda: http_ok(f"{url}/ping"), timeout=120)
        yield url + "/invocations"
    finally:
        service.stop(timeout=30)  # the server and its uvicorn worker: the whole group


def test_the_server_answers_like_the_model_in_process(registered, registry_client, server):
    import mlflow

    x = eval_split(registered)[:16]
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


def test_the_docs_curl_commands_work_as_written(registered, server):

    page = (REPO / "docs/mlflow.md").read_text()
    block = page.split("In another shell, send one digit", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    port = server.split(":")[2].split("/")[0]
    script = block.replace("127.0.0.1:5001", f"127.0.0.1:{port}").replace(".venv/bin/python", sys.executable)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=registered,
        env=env_for(registered),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    code = json.loads((registered / "code.json").read_text())["predictions"]
    assert len(code) == 1 and len(code[0]) == 32
    decoded = json.loads(proc.stdout[proc.stdout.rindex('{"predictions"') :])["predictions"]
    assert len(decoded) == 1 and len(decoded[0]) == 784  # PCA, linear, may step a little outside [0, 1]
