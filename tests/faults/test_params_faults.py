"""Params: every key is validated before any work, with one message naming the key, the
value and what is allowed. The table below covers every key of the schema; that a stage
stops on them before writing anything is tests/test_stage_errors.py."""

import pytest

from mnist_codec import params
from mnist_codec.errors import ParamsError

BAD_VALUES = [
    ({"seed": -1}, "seed", "integer"),
    ({"seed": "42"}, "seed", "integer"),
    ({"n_seeds": 0}, "n_seeds", "from 1 to 100"),
    ({"n_seeds": 2.0}, "n_seeds", "integer"),
    ({"device": "tpu"}, "device", "auto, cpu, cuda"),
    ({"latent_dim": 0}, "latent_dim", "from 1 to 783"),
    ({"latent_dim": 784}, "latent_dim", "from 1 to 783"),
    ({"latent_dim": 3.5}, "latent_dim", "integer"),
    ({"activation": "swish"}, "activation", "relu, tanh, leaky_relu, gelu, elu, silu"),
    ({"activation": []}, "activation", "relu, tanh"),
    ({"activation": ["relu", "relu"]}, "activation", "without repeated"),
    ({"data": {"source": "ftp://example.org/"}}, "data.source", "bundled"),
    ({"data": {"source": "file:///srv/mnist/../../etc/"}}, "data.source", "without '..' path segments"),
    ({"data": {"source": "https://mirror.example.org/a/%2E%2E/b/"}}, "data.source", "without '..'"),
    ({"data": {"protocol": "kfold"}}, "data.protocol", "holdout, validation, notebook"),
    ({"data": {"train_limit": 0}}, "data.train_limit", ">= 1"),
    ({"data": {"eval_limit": "all"}}, "data.eval_limit", "or null"),
    # the notebook protocol evaluates on its training images: a separate limit would be ignored
    ({"data": {"protocol": "notebook", "eval_limit": 500}}, "data.eval_limit", "shrink both with data.train_limit"),
    ({"train": {"epochs": 0}}, "train.epochs", "from 1"),
    ({"train": {"batch_size": True}}, "train.batch_size", "integer"),
    ({"train": {"lr": -0.001}}, "train.lr", "positive number"),
    ({"train": {"lr": 0}}, "train.lr", "positive number"),
    ({"train": {"lr": float("nan")}}, "train.lr", "positive number"),
    ({"train": {"schedule": "step"}}, "train.schedule", "constant, cosine, onecycle"),
    ({"train": {"weight_decay": "1e-4"}}, "train.weight_decay", "write 1.0e-4"),
    ({"train": {"weight_decay": -0.1}}, "train.weight_decay", "from 0"),
    ({"train": {"weight_decay": 1}}, "train.weight_decay", "up to 1"),
    ({"train": {"precision": "fp16"}}, "train.precision", "one of fp32, bf16"),
    ({"deep": {"hidden": []}}, "deep.hidden", "non-empty list"),
    ({"deep": {"hidden": [256, -1]}}, "deep.hidden", "non-empty list"),
    ({"deep": {"arch": "transformer"}}, "deep.arch", "one of mlp, conv"),
    ({"deep": {"channels": []}}, "deep.channels", "1 to 4 integers"),
    ({"deep": {"channels": [8, 8, 8, 8, 8]}}, "deep.channels", "1 to 4 integers"),
    ({"deep": {"channels": [32, 0]}}, "deep.channels", "from 1 to 512"),
    ({"deep": {"channels": "32"}}, "deep.channels", "e.g. [32, 64]"),
    ({"evaluate": {"n_examples": 0}}, "evaluate.n_examples", "from 1 to 64"),
    ({"evaluate": {"n_projection": 5}}, "evaluate.n_projection", "from 10"),
    ({"train": 5}, "train", "a mapping of epochs, batch_size, lr"),
]


@pytest.mark.parametrize(("raw", "key", "allowed"), BAD_VALUES)
def test_each_bad_value_names_key_value_and_allowed(raw, key, allowed):
    with pytest.raises(ParamsError) as err:
        params.validate(raw)
    msg = str(err.value)
    assert f"'{key}'" in msg
    assert allowed in msg


def test_the_table_covers_every_key_of_the_schema():
    keys = {key for _, key, _ in BAD_VALUES}
    assert set(params.SCHEMA) <= keys
