import pytest
import yaml

from mnist_codec import params
from mnist_codec.errors import ParamsError

from conftest import REPO


def test_repo_params_file_is_valid_and_matches_the_defaults():
    # params.yaml is the documented default: the dataclass defaults must say the same.
    assert params.load(REPO / "params.yaml") == params.Params()


def test_defaults_reproduce_the_notebook_settings():
    p = params.Params()
    assert (p.train.epochs, p.train.batch_size, p.train.lr) == (10, 128, 1e-3)
    assert p.latent_dim == 32 and p.deep.hidden == (256, 64) and p.deep.arch == "mlp"
    assert (p.train.schedule, p.train.weight_decay) == ("constant", 0.0)
    assert p.activation == ("relu", "tanh", "leaky_relu")
    assert p.n_seeds >= 3  # every autoencoder is trained on several seeds


def test_activation_accepts_one_name_or_a_list():
    assert params.validate({"activation": "tanh"}).activation == ("tanh",)
    assert params.validate({"activation": ["gelu", "silu"]}).activation == ("gelu", "silu")


def test_stronger_codecs_are_a_params_change_away():
    p = params.validate({"deep": {"arch": "conv", "channels": [16, 32, 64]}, "train": {"schedule": "onecycle"}})
    assert (p.deep.arch, p.deep.channels, p.train.schedule) == ("conv", (16, 32, 64), "onecycle")
    assert params.validate({"deep": {"hidden": [1000, 500, 250]}}).deep.hidden == (1000, 500, 250)
    assert params.validate({"data": {"protocol": "validation"}}).data.protocol == "validation"


def test_lr_typed_as_1e_minus_3_is_caught_with_a_hint(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  lr: 1e-3\n")
    assert yaml.safe_load(f.read_text())["train"]["lr"] == "1e-3"  # the YAML 1.1 trap itself
    with pytest.raises(ParamsError, match=r"'train.lr' = '1e-3'.*1\.0e-3"):
        params.load(f)


@pytest.mark.parametrize(
    ("raw", "key"),
    [({"activations": "relu"}, "activations"), ({"train": {"epoch": 3}}, "train.epoch"), ({"model": {}}, "model")],
)
def test_unknown_keys_are_rejected_by_name(raw, key):
    with pytest.raises(ParamsError, match=f"unknown key '{key}'"):
        params.validate(raw)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        params.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        params.load(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ParamsError, match="mapping"):
        params.load(top)


def test_schema_is_derived_from_the_models_and_forbids_unknown_keys():
    # The pydantic models are the schema: SCHEMA lists every field of Params and its sections.
    fields = {f for f in params.Params.model_fields if f not in params.SECTIONS}
    for section, cls in params.SECTIONS.items():
        fields |= {f"{section}.{f}" for f in cls.model_fields}
        assert cls.model_config["extra"] == "forbid"
    assert fields == set(params.SCHEMA)
    assert params.Params.model_config["extra"] == "forbid"


def test_allowed_text_comes_from_the_declared_bounds():
    assert params.allowed(params.SCHEMA["latent_dim"]) == "an integer from 1 to 783"
    assert params.allowed(params.SCHEMA["n_seeds"]) == "an integer from 1 to 100"
    assert params.allowed(params.SCHEMA["data.train_limit"]) == "an integer >= 1 or null"
    assert params.allowed(params.SCHEMA["device"]) == "one of auto, cpu, cuda"


def test_params_are_immutable():
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        params.Params().seed = 7
