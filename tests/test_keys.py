"""Dotted keys (mnist_codec.keys): read, written and named the same way for params.yaml, a
training's settings and a config error."""

from __future__ import annotations

import pytest

from mnist_codec import keys

DATA = {"train": {"lr": 0.001, "epochs": 10}, "seed": 1, "seeds": [1, 2], "empty": {}}


def test_flatten_names_each_leaf_and_keeps_lists_whole():
    assert keys.flatten(DATA) == {"train.lr": 0.001, "train.epochs": 10, "seed": 1, "seeds": [1, 2]}
    assert keys.flatten({"a": {"b": {"c": 1}}}, "x.") == {"x.a.b.c": 1}


def test_get_has_put_and_subset_of_dotted_keys():
    assert keys.get(DATA, "train.lr") == 0.001 and keys.get(DATA, "seed") == 1
    with pytest.raises(KeyError):
        keys.get(DATA, "train.momentum")
    assert keys.has(DATA, "train.epochs") and keys.has(DATA, "empty") and keys.has(DATA, "seeds")
    assert not keys.has(DATA, "train.momentum") and not keys.has(DATA, "seed.x") and not keys.has(DATA, "deep")
    raw: dict = {"train": {"lr": 0.1}}
    keys.put(raw, "train.epochs", 2)
    keys.put(raw, "deep.hidden", [64])
    keys.put(raw, "seed", 3)
    assert raw == {"train": {"lr": 0.1, "epochs": 2}, "deep": {"hidden": [64]}, "seed": 3}
    assert keys.subset(DATA, ["seed", "train.lr"]) == {"seed": 1, "train": {"lr": 0.001}}
    assert keys.subset(DATA, ["train"]) == {"train": {"lr": 0.001, "epochs": 10}}


def test_a_location_is_named_as_a_user_writes_it():
    assert keys.dotted(("rules", 0, "direction")) == "rules[0].direction"
    assert keys.dotted(("train", "epochs")) == "train.epochs" and keys.dotted(()) == ""
    assert keys.dotted((3,)) == "[3]"
