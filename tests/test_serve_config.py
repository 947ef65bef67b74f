"""serve.yaml (mnist_codec.serving.config): the committed file, one replica a CPU, and every bad
value refused by its key, in the config layer's one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_codec.errors import ParamsError
from mnist_codec.serving import config

REPO = Path(__file__).resolve().parents[1]


def test_the_committed_serve_yaml_is_valid_and_one_replica_per_cpu():
    settings = config.load(REPO / "serve.yaml")
    assert settings.port == 5002 and settings.replicas == "cpus"
    assert settings.replica_count(2.0) == 2 and settings.replica_count(64.0) == settings.max_replicas
    assert settings.replica_count(0.5) == 1
    assert config.load(REPO / "serve.yaml", port=6000, replicas=None).port == 6000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("replica: 2\n", ":1: unknown key 'replica'; known keys are port, replicas, max_replicas,"),
        ("port: 0\n", ":1: 'port' = 0 is not allowed; expected an integer from 1 to 65535"),
        ("port: lots\n", ":1: 'port' = 'lots' is not allowed; expected an integer from 1 to 65535"),
        ("replicas: all\n", ":1: 'replicas' = 'all' is not allowed; expected an integer above 0 or one of cpus"),
        (
            "port: 5002\nbatch_wait_timeout_s: 5\n",
            ":2: 'batch_wait_timeout_s' = 5 is not allowed; expected a number from 0 to 1",
        ),
        ("- 1\n", ": expected a mapping of port, replicas,"),
        ("port: [\n", ":2: not valid YAML"),
    ],
)
def test_a_bad_serve_yaml_is_refused_by_key(tmp_path, text, message):
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=None) as err:
        config.load(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_missing_serve_yaml_is_named(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        config.load(tmp_path / "none.yaml")
