"""The one config layer: the YAML files the project reads (``params.yaml``, ``tune.yaml``,
``serve.yaml``, ``metrics_gate.yaml``, ``metrics_accepted.yaml``) are read by :func:`read_yaml`
and checked against a pydantic model by :func:`check`.

A bad file gets one line, in one format, from :func:`message`: the file and the line, the
key's dotted path (``rules[0].direction``, ``train.epochs``), the value found and what is
allowed, worded from the field's own declaration (its type, its bounds, its choices, or the
``accepts`` text a field with its own validator declares). Limits live on the fields; nothing
here knows a file's keys.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from .errors import MnistCodecError, ParamsError
from .keys import Loc, dotted, lookup

M = TypeVar("M", bound=BaseModel)
FLOAT_HINT = "YAML reads 1e-3 as text; write 1.0e-3"


@dataclass(frozen=True)
class Document:
    """A YAML file's data and, for each key's dotted location, the line it starts on."""

    source: str  # the file as named to the user, or what the data is when it came from no file
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, else of the nearest key above it that has one."""
        while True:
            if loc in self.lines:
                return self.lines[loc]
            if not loc:
                return None
            loc = loc[:-1]

    def where(self, loc: Loc = ()) -> str:
        line = self.line(loc)
        return f"{self.source}:{line}" if line else self.source

    def overridden(self, values: dict[str, Any]) -> Document:
        """This file with top-level ``values`` set on top (command-line options, say): those keys
        lose their lines, since an error in one of them is not in the file. Data that is not a
        mapping is left for :func:`check` to refuse."""
        if not values or not (self.data is None or isinstance(self.data, dict)):
            return self
        lines = {loc: n for loc, n in self.lines.items() if not (loc and loc[0] in values)}
        return Document(self.source, {**(self.data or {}), **values}, lines)


def read_yaml(path: str | Path, *, error: type[MnistCodecError] = ParamsError, what: str = "") -> Document:
    """Read ``path`` as YAML: its data (None when empty) and each key's line. A missing file, an
    unreadable one or bad YAML raises ``error`` naming the file (and ``what`` it is for)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: not found" + (f" ({what})" if what else "")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:  # where the parser stopped, in the file's own lines
        mark = exc.problem_mark or exc.context_mark
        at = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        words = "; ".join(w for w in (exc.problem, exc.context) if w)
        raise error(f"{at}: not valid YAML: {words}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        _lines(node, (), lines)
    return Document(str(path), data, lines)


def _lines(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    if loc:  # the file as a whole has no line of its own
        out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _lines(value, (*loc, key.value), out)
            out[(*loc, key.value)] = key.start_mark.line + 1  # a key's line is where it is written
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*loc, i), out)


def check(
    model: type[M],
    doc: Document,
    *,
    error: type[MnistCodecError] = ParamsError,
    empty_ok: bool = True,
    context: dict[str, Any] | None = None,
) -> M:
    """``doc``'s data as ``model``; the first problem raises ``error`` in one line (:func:`message`).
    ``context`` reaches the model's validators (what a value is checked against besides the file)."""
    data = doc.data
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{doc.where()}: expected a mapping of {', '.join(fields(model))}, found {_kind(data)}")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error(message(model, doc, exc.errors()[0])) from None


def message(model: type[BaseModel], doc: Document, err: ErrorDetails) -> str:
    """One line for a pydantic error: file and line, the key, the value and what is allowed."""
    loc, fld, parent = _resolve(model, tuple(err["loc"]))
    key = dotted(loc)
    where = doc.where(loc)
    if err["type"] == "extra_forbidden":
        above = loc[:-1] if len(loc) > 1 and not isinstance(loc[-2], int) else ()  # an item of a list: its own keys
        known = ", ".join(dotted((*above, k)) for k in fields(parent))
        return f"{where}: unknown key '{key}'; known keys are {known}"
    if not key:  # a check of the whole file (a model validator)
        return f"{where}: {_own_words(err)}"
    expected = allowed(fld) if fld is not None else err["msg"]  # no field: pydantic's words
    if err["type"] == "missing":
        return f"{where}: '{key}' is missing; expected {expected}"
    value = lookup(doc.data, loc)
    section = _model_of(fld.annotation) if fld is not None else None  # a field holding mappings
    if err["type"] in ("value_error", "assertion_error"):
        if section is not None:  # a check of a whole section
            return f"{where}: '{key}': {_own_words(err)}"
        expected = _own_words(err)
    elif section is not None and err["type"] == "model_type":
        expected = "a mapping of " + ", ".join(fields(section))
    if isinstance(value, str) and _numeric(value) and "number" in expected and "write 1.0e" not in expected:
        expected += f" ({FLOAT_HINT})"
    return f"{where}: '{key}' = {value!r} is not allowed; expected {expected}"


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _own_words(err: ErrorDetails) -> str:
    """A validator's own message, its first line (an ``assert`` adds the failed expression)."""
    ctx = err.get("ctx") or {}
    return str(ctx.get("error", err["msg"])).split("\n")[0]


def fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields by the names a file writes them with (their alias, where one is set)."""
    return {f.alias or name: f for name, f in model.model_fields.items()}


def _resolve(model: type[BaseModel], loc: Loc) -> tuple[Loc, FieldInfo | None, type[BaseModel]]:
    """The part of pydantic's ``loc`` a user names (a position in a list of values belongs to
    its key; one in a list of mappings is kept), the field there and the model holding it."""
    out: list[str | int] = []
    current: type[BaseModel] | None = model
    fld: FieldInfo | None = None
    parent: type[BaseModel] = model
    keyed = False  # the next part is a key of a mapping of models
    for part in loc:
        if keyed:
            out.append(part)
            keyed = False
            continue
        if isinstance(part, str):
            if current is None or part not in fields(current):
                if current is not None:  # an unknown key: its model lists the known ones
                    out.append(part)
                    parent = current
                break
            parent, fld = current, fields(current)[part]
            out.append(part)
            current = _model_of(fld.annotation)
            keyed = current is not None and get_origin(_strip(fld.annotation)) is dict
        elif current is not None and fld is not None and _is_sequence(fld.annotation):
            out.append(part)  # the position of a mapping in a list of them
        else:
            break  # a position in a list of values: the key names it
    return tuple(out), fld, parent


def _strip(annotation: Any) -> Any:
    """Annotated[X, ...] -> X; X | None -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_sequence(annotation: Any) -> bool:
    return get_origin(_strip(annotation)) in (list, tuple)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, the item of a list or tuple of models, or the value of
    a mapping of them."""
    base = _strip(annotation)
    if get_origin(base) in (list, tuple):
        items = [a for a in get_args(base) if a is not Ellipsis]
        base = _strip(items[0]) if len(items) == 1 else None
    elif get_origin(base) is dict:
        base = _strip(get_args(base)[1])
    return base if isinstance(base, type) and issubclass(base, BaseModel) else None


def allowed(fld: FieldInfo) -> str:
    """What a field accepts, worded from its declaration: its ``accepts`` text if it has one,
    else its choices, or its type and bounds."""
    extra = fld.json_schema_extra if isinstance(fld.json_schema_extra, dict) else {}
    if "accepts" in extra:
        return str(extra["accepts"])
    return _allowed(fld.annotation, list(fld.metadata))


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """Annotated[X, constraints...] -> X, with its constraints added to ``metadata``."""
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata = metadata + [m for x in more for m in (x.metadata if isinstance(x, FieldInfo) else [x])]
    return annotation, metadata


def _allowed(annotation: Any, metadata: list[Any]) -> str:
    optional = type(None) in get_args(annotation)
    base, metadata = _unwrap(annotation, metadata)
    args = (
        [a for a in get_args(base) if a is not type(None)] if get_origin(base) in (Union, types.UnionType) else [base]
    )
    words = [_one(a, metadata) for a in args]
    return " or ".join(words) + (" or null" if optional else "")


def _one(annotation: Any, metadata: list[Any]) -> str:
    annotation, metadata = _unwrap(annotation, metadata)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(annotation))
    bounds = {
        type(m).__name__: getattr(m, type(m).__name__.lower())
        for m in metadata
        if isinstance(m, (at.Ge, at.Gt, at.Le, at.Lt))
    }
    if annotation is bool:
        return "true or false"
    if annotation is str:
        return "a text"
    if annotation is dict or get_origin(annotation) is dict:
        return "a mapping"
    if get_origin(annotation) in (list, tuple):
        items = [a for a in get_args(annotation) if a is not Ellipsis]
        return f"a list, each {_one(items[0], [])}" if len(items) == 1 else "a list"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping of " + ", ".join(fields(annotation))
    if annotation not in (int, float):
        return getattr(annotation, "__name__", str(annotation))
    text = "an integer" if annotation is int else "a number"
    ge, gt, le, lt = (bounds.get(k) for k in ("Ge", "Gt", "Le", "Lt"))
    low = f"from {ge}" if ge is not None else (f"above {gt}" if gt is not None else "")
    high = f"to {le}" if le is not None else (f"up to (not including) {lt}" if lt is not None else "")
    if low and high:
        text += f" {low} {high}"
    elif low:
        text += f" >= {ge}" if ge is not None else f" {low}"
    elif high:
        text += f" <= {le}" if le is not None else f" below {lt}"
    return text


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
