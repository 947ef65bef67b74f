"""Request and answer bodies of the served codec, as the Ray Serve server reads and writes them.

Two formats, chosen by the request's ``Content-Type``:

- ``application/json``: MLflow's scoring format, unchanged: ``{"inputs": rows}`` (or
  ``"instances"``, or ``"dataframe_split"``'s ``data``), ``"params": {"mode": ...}``; the answer
  is ``{"predictions": rows}``, as ``mlflow models serve`` gives it;
- ``application/x-npy``: one ``.npy`` array (``numpy.save``'s format, never pickled) of N rows:
  784 pixels as float32/float64 in [0, 1] or uint8 0-255, or N codes (float) to decode; the
  mode comes from the query (``?mode=encode``). The answer is a float32 ``.npy`` array.

A bad request is refused with :class:`Refused`: its HTTP status and MLflow's error body
(``{"error_code": ..., "message": ...}``), whatever the request's format. Pure functions:
testable without a server.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .model import DEFAULT_MODE, MAX_ROWS, N_PIXELS, BadInput, check_batch, check_mode

JSON, NPY = "application/json", "application/x-npy"
# The largest body read: a MAX_ROWS batch as float32 npy (31 MB) fits; as JSON text it does
# not (about 60 MB): a client sends a JSON batch that large in parts, or as npy.
MAX_BODY_BYTES = 32 * 2**20
JSON_KEYS = ("inputs", "instances", "dataframe_split")
NPY_MAGIC = b"\x93NUMPY"


@dataclass
class Refused(Exception):
    """A request the server answers with a 4xx: ``status``, MLflow's ``error_code``, a message."""

    status: int
    message: str
    error_code: str = "BAD_REQUEST"

    def __str__(self) -> str:
        return self.message

    def body(self) -> bytes:
        return json.dumps({"error_code": self.error_code, "message": self.message}).encode()


def invalid(exc: BadInput) -> Refused:
    """The codec's own refusal (shape, values, mode, rows), as MLflow's server answers it."""
    return Refused(400, str(exc), "INVALID_PARAMETER_VALUE")


def too_large(size: int, limit: int = MAX_BODY_BYTES) -> Refused:
    return Refused(
        413,
        f"request body of {size:,} bytes is over the limit of {limit:,}; send the batch in parts",
        "RESOURCE_LIMIT_EXCEEDED",
    )


def media_type(content_type: str | None) -> str:
    """The format a ``Content-Type`` header names, without its parameters; 415 for any other."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in (JSON, NPY):
        return kind
    raise Refused(
        415,
        f"Content-Type {content_type or '(none)'!r} is not supported: send {JSON} (MLflow's format) or {NPY}",
    )


@dataclass(frozen=True)
class Request:
    """One parsed request: its rows (float32), what to do with them, the format to answer in."""

    rows: np.ndarray  # (N, 784) pixels, or (N, latent_dim) codes for mode "decode"
    mode: str
    fmt: str


def parse(body: bytes, fmt: str, query_mode: str | None, latent_dim: int, max_rows: int = MAX_ROWS) -> Request:
    """A request body in format ``fmt`` as checked rows, or :class:`Refused` naming the problem."""
    if fmt == NPY:
        mode, values = None, read_npy(body)
    else:
        mode, values = read_json(body)
    mode = mode or query_mode or DEFAULT_MODE  # JSON's params.mode first, as MLflow reads it
    try:
        mode = check_mode(mode)
        if fmt == NPY:
            values = npy_values(values, pixels=mode != "decode")
        rows = check_batch(values, latent_dim if mode == "decode" else N_PIXELS, mode != "decode", max_rows)
    except BadInput as exc:
        raise invalid(exc) from None
    return Request(rows, mode, fmt)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as an npy body (numpy.save's format, no pickle): what a client sends and what
    the server answers in npy."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def read_npy(body: bytes) -> np.ndarray:
    if not body:
        raise Refused(400, "empty request body: send one .npy array (numpy.save's format)")
    if not body.startswith(NPY_MAGIC):
        raise Refused(400, "body is not an .npy array: it does not start with numpy.save's header (\\x93NUMPY)")
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise Refused(400, f"body is not a readable .npy array ({exc}); pickled arrays are refused") from None


def npy_values(array: np.ndarray, pixels: bool) -> np.ndarray:
    """An npy array's values as numbers the codec checks: uint8 pixels become [0, 1]."""
    if array.dtype == np.uint8 and pixels:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype.kind != "f":
        allowed = "float32 or float64 in [0, 1], or uint8 0-255" if pixels else "float32 or float64"
        raise BadInput(f"array dtype {array.dtype} is not accepted: {'pixels' if pixels else 'codes'} are {allowed}")
    return array


def read_json(body: bytes) -> tuple[Any, Any]:
    """(params.mode or None, rows) of MLflow's JSON request format."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"body is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise Refused(400, f"expected a JSON object with one of the keys {', '.join(JSON_KEYS)}")
    keys = [k for k in JSON_KEYS if k in doc]
    if len(keys) != 1:
        raise Refused(
            400,
            f"the JSON object must hold exactly one of {', '.join(JSON_KEYS)} (MLflow's scoring format); "
            f"got keys {sorted(doc)}",
        )
    rows = doc[keys[0]]
    if keys[0] == "dataframe_split":
        rows = rows.get("data") if isinstance(rows, dict) else None
        if rows is None:
            raise Refused(400, "dataframe_split must be an object with a 'data' list of rows")
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise Refused(400, 'params must be a JSON object, e.g. {"mode": "encode"}')
    unknown = sorted(set(params) - {"mode"})
    if unknown:
        raise invalid(BadInput(f"unknown param(s) {', '.join(unknown)}: the model takes 'mode'"))
    return params.get("mode"), rows


def answer(out: np.ndarray, fmt: str) -> tuple[bytes, str]:
    """(body, Content-Type) of the answer ``out`` in format ``fmt``."""
    out = np.ascontiguousarray(out, dtype=np.float32)
    if fmt == NPY:
        return npy_bytes(out), NPY
    import orjson

    # orjson writes each float32 in its shortest form, which reads back as the same float32.
    return orjson.dumps({"predictions": out}, option=orjson.OPT_SERIALIZE_NUMPY), JSON
