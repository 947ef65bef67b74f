"""The one config layer (mnist_codec.config): one YAML reader, one check against a pydantic model,
one message format -- the file and the line, the key's dotted path, the value, what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from mnist_codec import config, keys
from mnist_codec.errors import GateError, ParamsError


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(json_schema_extra={"accepts": "a name"})]
    size: Annotated[int, Strict(), Field(ge=1, le=9)] = 1
    share: Annotated[float, Strict(), Field(gt=0, lt=1)] = 0.5


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: int = 0
    high: int = 1

    @model_validator(mode="after")
    def _ordered(self) -> Section:
        if self.low > self.high:
            raise ValueError(f"low = {self.low} is above high = {self.high}")
        return self


class File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["a", "b"] = "a"
    widths: tuple[Annotated[int, Strict(), Field(ge=1)], ...] = (1,)
    items: list[Item] = []
    by_name: dict[str, Item] = {}
    section: Section = Section()


def refused(tmp_path, text: str, error=ParamsError) -> str:
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(error) as info:
        config.check(File, config.read_yaml(path, error=error), error=error)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}")
    return message.removeprefix(str(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: c\n", ":1: 'kind' = 'c' is not allowed; expected one of a, b"),
        ("kind: a\nwidths: [1, 0]\n", ":2: 'widths' = [1, 0] is not allowed; expected a list, each an integer >= 1"),
        (
            "items:\n  - {name: x}\n  - {name: y, size: 10}\n",
            ":3: 'items[1].size' = 10 is not allowed; expected an integer from 1 to 9",
        ),
        ("items:\n  - {size: 2}\n", ":2: 'items[0].name' is missing; expected a name"),
        ("items:\n  - {name: x, colour: red}\n", ":2: unknown key 'items[0].colour'; known keys are name, size, share"),
        (
            "by_name:\n  one: {name: x, share: 1}\n",
            ":2: 'by_name.one.share' = 1 is not allowed; expected a number above 0 up to (not including) 1",
        ),
        (
            "items:\n  - {name: x, share: '1e-1'}\n",
            "expected a number above 0 up to (not including) 1 (YAML reads 1e-3 as text; write 1.0e-3)",
        ),
        ("section: {low: 3, high: 2}\n", ":1: 'section': low = 3 is above high = 2"),
        ("section: [1]\n", ":1: 'section' = [1] is not allowed; expected a mapping of low, high"),
        ("section:\n  middle: 1\n", ":2: unknown key 'section.middle'; known keys are section.low, section.high"),
        ("colour: red\n", ":1: unknown key 'colour'; known keys are kind, widths, items, by_name, section"),
        ("- 1\n", ": expected a mapping of kind, widths, items, by_name, section, found list"),
        ("kind: [\n", ":2: not valid YAML: expected the node content, but found '<stream end>'"),
    ],
)
def test_a_bad_file_gets_one_line_naming_the_file_line_key_value_and_what_is_allowed(tmp_path, text, message):
    got = refused(tmp_path, text)
    assert got.startswith(message) if message.startswith(":") else message in got


def test_the_caller_chooses_the_error_and_an_empty_file_is_empty(tmp_path):
    assert refused(tmp_path, "kind: c\n", GateError).startswith(":1: 'kind'")
    (tmp_path / "empty.yaml").write_text("")
    assert config.check(File, config.read_yaml(tmp_path / "empty.yaml")) == File()
    with pytest.raises(ParamsError, match=r"empty.yaml: expected a mapping of kind, .*, found nothing$"):
        config.check(File, config.read_yaml(tmp_path / "empty.yaml"), empty_ok=False)


def test_a_missing_or_unreadable_file_is_named_with_what_it_is_for(tmp_path):
    with pytest.raises(GateError, match=rf"^{tmp_path / 'none.yaml'}: not found \(the rules\)$"):
        config.read_yaml(tmp_path / "none.yaml", error=GateError, what="the rules")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ParamsError, match=r"bin.yaml: cannot be read"):
        config.read_yaml(tmp_path / "bin.yaml")


def test_data_from_no_file_is_named_by_its_source_without_a_line():
    with pytest.raises(ParamsError) as info:
        config.check(File, config.Document("params", {"kind": "c"}))
    assert str(info.value) == "params: 'kind' = 'c' is not allowed; expected one of a, b"


def test_a_value_set_on_top_of_the_file_is_not_blamed_on_a_line_of_it(tmp_path):
    (tmp_path / "f.yaml").write_text("widths: [2]\nkind: a\n")
    doc = config.read_yaml(tmp_path / "f.yaml").overridden({"kind": "c"})
    assert doc.data == {"widths": [2], "kind": "c"} and doc.line(("widths",)) == 1
    with pytest.raises(ParamsError) as info:
        config.check(File, doc)
    assert str(info.value) == f"{tmp_path / 'f.yaml'}: 'kind' = 'c' is not allowed; expected one of a, b"
    listed = config.Document("f.yaml", [1])
    assert listed.overridden({"kind": "a"}) is listed and doc.overridden({}) is doc


def test_each_key_has_the_line_it_is_written_on(tmp_path):
    (tmp_path / "f.yaml").write_text("kind: a\nitems:\n  - name: x\n    size: 2\n")
    doc = config.read_yaml(tmp_path / "f.yaml")
    assert doc.lines[("kind",)] == 1 and doc.lines[("items",)] == 2
    assert doc.lines[("items", 0)] == 3 and doc.lines[("items", 0, "size")] == 4
    assert doc.line(("items", 0, "share")) == 3  # not written: the nearest key above it
    assert keys.dotted(("items", 0, "size")) == "items[0].size" and keys.dotted(()) == ""
    assert keys.lookup(doc.data, ("items", 0, "size")) == 2 and keys.lookup(doc.data, ("items", 5)) is None


class Kinds(BaseModel):
    """A field of each kind the message words from its declaration."""

    model_config = ConfigDict(extra="forbid")
    flag: bool = False
    text: str = ""
    table: dict[str, int] = {}
    anything: dict = {}
    pair: tuple[int, int] = (1, 2)
    counts: list[int] = []
    item: Item | None = None
    items_at_most_3: Annotated[list[Item], Field(max_length=3)] | None = None
    two_items: tuple[Item, Item] | None = None
    where: Path = Path()
    size_or_name: int | str = 1
    maybe: int | None = None
    at_least: Annotated[int, Strict(), Field(ge=0)] = 0
    above: Annotated[int, Strict(), Field(gt=0)] = 1
    at_most: Annotated[int, Strict(), Field(le=5)] = 0
    below: Annotated[int, Strict(), Field(lt=5)] = 0
    rate: Annotated[
        float, Strict(), Field(gt=0, json_schema_extra={"accepts": "a rate such as 1.0e-4 (YAML reads 1e-4 as text)"})
    ] = 0.1
    ratio: Annotated[float, Strict(), Field(gt=0)] = 1.0
    even: int = 0

    @field_validator("even")
    @classmethod
    def _even(cls, value: int) -> int:
        assert value % 2 == 0, "an even integer"
        return value


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("flag", "true or false"),
        ("text", "a text"),
        ("table", "a mapping"),
        ("anything", "a mapping"),
        ("pair", "a list"),
        ("counts", "a list, each an integer"),
        ("item", "a mapping of name, size, share or null"),
        ("where", "Path"),
        ("size_or_name", "an integer or a text"),
        ("maybe", "an integer or null"),
        ("at_least", "an integer >= 0"),
        ("above", "an integer above 0"),
        ("at_most", "an integer <= 5"),
        ("below", "an integer below 5"),
    ],
)
def test_what_a_field_allows_is_worded_from_its_declaration(name, words):
    assert config.allowed(config.fields(Kinds)[name]) == words


def kinds(data: dict) -> str:
    with pytest.raises(ParamsError) as info:
        config.check(Kinds, config.Document("k", data))
    return str(info.value)


def test_messages_follow_lists_of_mappings_however_their_field_is_wrapped():
    assert kinds({"items_at_most_3": [{"name": "x", "size": 0}]}) == (
        "k: 'items_at_most_3[0].size' = 0 is not allowed; expected an integer from 1 to 9"
    )
    # a tuple of two mappings is no list of one kind: its key names the error
    assert kinds({"two_items": [{"name": "x"}, {"name": "y", "size": 0}]}) == (
        "k: 'two_items' = [{'name': 'x'}, {'name': 'y', 'size': 0}] is not allowed; expected a list or null"
    )
    assert kinds({"item": {"name": "x", "colour": 1}}) == (
        "k: unknown key 'item.colour'; known keys are item.name, item.size, item.share"
    )


def test_the_float_hint_is_given_to_numeric_text_only_and_once():
    assert kinds({"ratio": "abc"}) == "k: 'ratio' = 'abc' is not allowed; expected a number above 0"
    assert kinds({"ratio": "1e3"}) == (
        "k: 'ratio' = '1e3' is not allowed; expected a number above 0 (YAML reads 1e-3 as text; write 1.0e-3)"
    )
    assert kinds({"above": "1e3"}) == "k: 'above' = '1e3' is not allowed; expected an integer above 0"
    assert kinds({"rate": "1e-4"}) == (
        "k: 'rate' = '1e-4' is not allowed; expected a rate such as 1.0e-4 (YAML reads 1e-4 as text)"
    )


def test_an_assertion_of_a_validator_is_worded_as_its_own():
    assert kinds({"even": 3}) == "k: 'even' = 3 is not allowed; expected an even integer"


def test_an_error_at_no_declared_field_keeps_pydantics_words():
    doc = config.Document("k", {"ghost": 1})
    err = {"type": "int_type", "loc": ("ghost",), "msg": "Input should be a valid integer", "input": 1}
    assert config.message(Kinds, doc, err) == "k: 'ghost' = 1 is not allowed; expected Input should be a valid integer"
    err = {"type": "missing", "loc": ("ghost",), "msg": "Field required", "input": {}}
    assert config.message(Kinds, doc, err) == "k: 'ghost' is missing; expected Field required"
    err = {"type": "value_error", "loc": (), "msg": "Value error, the words", "input": {}}
    assert config.message(Kinds, doc, err) == "k: Value error, the words"


def test_lookup_finds_nothing_past_the_data():
    data = {"items": [{"name": "x"}], "n": 5}
    assert keys.lookup(data, ("items", 0, "name")) == "x"
    assert keys.lookup(data, ("items", 1)) is None and keys.lookup(data, ("items", -1)) is None
    assert keys.lookup(data, ("n", "deeper")) is None and keys.lookup(data, ("items", "name")) is None


def test_a_missing_file_without_a_purpose_and_bad_yaml_say_what_they_are(tmp_path):
    with pytest.raises(ParamsError) as info:
        config.read_yaml(tmp_path / "none.yaml")
    assert str(info.value) == f"{tmp_path / 'none.yaml'}: not found"
    (tmp_path / "bad.yaml").write_text("kind: [\n")
    with pytest.raises(ParamsError) as info:
        config.read_yaml(tmp_path / "bad.yaml")
    assert str(info.value) == (
        f"{tmp_path / 'bad.yaml'}:2: not valid YAML: expected the node content, but found '<stream end>'; "
        "while parsing a flow node"
    )
    (tmp_path / "tab.yaml").write_text("kind: a\n\tsize: 2\n")
    with pytest.raises(ParamsError, match=r"tab.yaml:2: not valid YAML: found character '\\t' that cannot start any"):
        config.read_yaml(tmp_path / "tab.yaml")
