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
    with pytest.raises(ParamsError, match=r"not found"):
        params.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1\n")
    with pytest.raises(ParamsError, match=r"not valid YAML"):
        params.load(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ParamsError, match=r"mapping"):
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


def test_a_stage_refuses_a_file_that_leaves_a_key_to_the_default(tmp_path):
    f = tmp_path / "params.yaml"
    full = params.Params().to_dict()
    f.write_text(yaml.safe_dump(full))
    assert params.load(f, complete=True) == params.Params()
    del full["latent_dim"], full["train"]["lr"]
    f.write_text(yaml.safe_dump(full))
    assert params.load(f) == params.Params()  # a library caller takes the defaults
    with pytest.raises(ParamsError) as err:
        params.load(f, complete=True)
    assert str(err.value) == (
        f"{f}: does not set 'latent_dim' (default 32), 'train.lr' (default 0.001); every key a stage "
        "reads is written there, where DVC tracks it, not taken from a default"
    )
    f.write_text("")
    with pytest.raises(ParamsError, match=r"does not set 'seed' \(default 42\), 'n_seeds'"):
        params.load(f, complete=True)


def test_missing_keys_are_named_by_their_dotted_path():
    assert params.missing_keys(params.Params().to_dict()) == []
    assert params.missing_keys({"seed": 1, "train": 5}) == [k for k in params.SCHEMA if k != "seed"]
    partial = params.Params().to_dict()
    partial["data"] = {"source": "bundled"}
    assert params.missing_keys(partial) == ["data.protocol", "data.train_limit", "data.eval_limit"]


def test_the_reference_has_a_row_per_key_worded_from_the_schema():
    rows = {r["key"]: r for r in params.reference()}
    assert list(rows) == list(params.SCHEMA)
    assert rows["latent_dim"] == {
        "key": "latent_dim",
        "default": 32,
        "accepts": "an integer from 1 to 783",
        "meaning": "the code size of every codec",
    }
    assert rows["activation"]["accepts"] == "one of relu, tanh, leaky_relu, gelu, elu, silu, or a list of them"
    assert rows["activation"]["default"] == ["relu", "tanh", "leaky_relu"]
    assert rows["deep.hidden"]["accepts"] == "a non-empty list of integers from 1 to 4096, e.g. [256, 64]"
    assert rows["train.lr"]["accepts"] == "a positive number such as 1.0e-3 (YAML reads 1e-3 as text; write 1.0e-3)"
    assert (
        rows["data.eval_limit"]["default"] is None
        and rows["train.epochs"]["meaning"] == "passes over the training split"
    )


def test_allowed_words_every_kind_of_field():
    assert params.allowed(params.SCHEMA["seed"]) == "an integer from 0 to 4294967295"
    assert params.allowed(params.SCHEMA["data.protocol"]) == "one of holdout, validation, notebook"
    assert params.allowed(params.SCHEMA["data.eval_limit"]) == "an integer >= 1 or null"
    assert params.allowed(params.SCHEMA["evaluate.n_projection"]) == "an integer from 10 to 100000"
    assert params.allowed(params.SCHEMA["train.weight_decay"]).startswith(
        "a number from 0 (none, the notebook's) up to 1"
    )
    assert params.allowed(params.SCHEMA["train.batch_size"]) == "an integer from 1 to 1000000"


def test_the_params_as_written_to_params_yaml():
    d = params.Params().to_dict()
    assert d["deep"]["hidden"] == [256, 64] and d["activation"] == ["relu", "tanh", "leaky_relu"]
    assert d["train"] == {
        "epochs": 10,
        "batch_size": 128,
        "lr": 0.001,
        "schedule": "constant",
        "weight_decay": 0.0,
        "precision": "fp32",
    }
    assert params.validate(d) == params.Params()


def test_an_empty_file_takes_the_defaults_and_a_non_mapping_is_named():
    assert params.validate(None) == params.Params()
    with pytest.raises(ParamsError, match=r"^params: expected a mapping of seed, n_seeds, .*, evaluate, found list$"):
        params.validate([1])
    with pytest.raises(ParamsError, match=r"found str$"):
        params.validate("seed: 1")


def test_each_message_names_the_key_the_value_and_what_is_allowed():
    with pytest.raises(ParamsError) as err:
        params.validate({"deep": {"hidden": [256, -1]}})
    assert str(err.value) == (
        "params: 'deep.hidden' = [256, -1] is not allowed; expected a non-empty list of integers from 1 to 4096, "
        "e.g. [256, 64]"
    )
    with pytest.raises(ParamsError) as err:
        params.validate({"train": {"epochs": 0}})
    assert str(err.value) == "params: 'train.epochs' = 0 is not allowed; expected an integer from 1 to 10000"
    with pytest.raises(ParamsError) as err:
        params.validate({"evaluate": [1]})
    assert str(err.value) == "params: 'evaluate' = [1] is not allowed; expected a mapping of n_examples, n_projection"
    with pytest.raises(ParamsError) as err:
        params.validate({"train": {"epoch": 3}})
    known = ", ".join(k for k in params.SCHEMA if k.startswith("train."))
    assert str(err.value) == f"params: unknown key 'train.epoch'; known keys are {known}"
    with pytest.raises(ParamsError) as err:
        params.validate({"colour": 3})
    assert str(err.value) == (
        "params: unknown key 'colour'; known keys are seed, n_seeds, device, latent_dim, activation, data, train, "
        "deep, evaluate"
    )


def test_the_notebook_protocol_refuses_an_evaluation_limit_only():
    p = params.validate({"data": {"protocol": "notebook", "train_limit": 500}})
    assert (p.data.protocol, p.data.train_limit, p.data.eval_limit) == ("notebook", 500, None)
    assert params.validate({"data": {"protocol": "holdout", "eval_limit": 500}}).data.eval_limit == 500
    with pytest.raises(ParamsError) as err:
        params.validate({"data": {"protocol": "notebook", "eval_limit": 500}})
    assert str(err.value) == (
        "params: 'data.eval_limit' = 500 is not allowed under data.protocol 'notebook', which evaluates on the "
        "images it trains on; set it to null and shrink both with data.train_limit"
    )


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("deep.hidden", [1], True),
        ("deep.hidden", [4096, 1], True),
        ("deep.channels", [1], True),
        ("deep.channels", [512, 512, 512, 512], True),
        ("deep.channels", [513], False),
        ("deep.channels", [True], False),
        ("train.weight_decay", 0, True),
        ("train.weight_decay", 0.999, True),
        ("train.weight_decay", True, False),
        ("train.weight_decay", None, False),
        ("data.source", "bundled", True),
        ("data.source", "https://m.example.org/mnist/", True),
        ("data.source", "http://m/", True),
        ("data.source", "file:///srv/mnist/", True),
        ("data.source", "Bundled", False),
        ("data.source", 5, False),
        ("data.source", "https://m/a/../b/", False),
        ("data.source", "file:///srv/..", False),
    ],
)
def test_values_at_the_edges_of_what_a_key_allows(key, value, ok):
    section, name = key.split(".")
    raw = {section: {name: value}}
    if ok:
        got = getattr(getattr(params.validate(raw), section), name)
        assert got == (tuple(value) if isinstance(value, list) else value)
    else:
        with pytest.raises(ParamsError, match=rf"^params: '{section}\.{name}' = "):
            params.validate(raw)


def test_a_missing_params_file_is_named_with_what_it_is_for(tmp_path):
    with pytest.raises(ParamsError) as err:
        params.load(tmp_path / "params.yaml")
    assert str(err.value) == f"{tmp_path / 'params.yaml'}: not found (the pipeline's parameters)"


def test_the_default_file_is_params_yaml_in_the_working_directory(monkeypatch):
    monkeypatch.chdir(REPO)
    assert params.load() == params.Params()


def test_allowed_words_any_optional_field_from_its_inner_type():
    from typing import Literal, Optional

    from pydantic.fields import FieldInfo

    assert params.allowed(FieldInfo.from_annotation(Optional[Literal["a", "b"]])) == "one of a, b or null"  # noqa: UP045
    assert params.allowed(FieldInfo.from_annotation(Optional[float])) == "a number or null"  # noqa: UP045
    assert params.allowed(FieldInfo.from_annotation(float)) == "a number"
