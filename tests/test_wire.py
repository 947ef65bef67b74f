"""The Ray Serve server's bodies, without a server: JSON (MLflow's format) and npy requests parsed
and checked, answers written, every refusal with its status (serve.yaml: tests/test_serve_config.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from mnist_codec.serving import wire
from mnist_codec.serving.wire import JSON, NPY, Refused, npy_bytes

LATENT = 8
REPO = Path(__file__).resolve().parents[1]


def refusal(body: bytes, fmt: str, mode: str | None = None, max_rows: int = 100) -> Refused:
    with pytest.raises(Refused) as err:
        wire.parse(body, fmt, mode, LATENT, max_rows=max_rows)
    return err.value


@pytest.fixture
def pixels(digits) -> np.ndarray:
    return digits[0][:3]


def test_json_in_mlflows_formats_reads_the_same_rows(pixels):
    for doc in (
        {"inputs": pixels.tolist()},
        {"instances": pixels.tolist()},
        {"dataframe_split": {"columns": list(range(784)), "data": pixels.tolist()}},
    ):
        req = wire.parse(json.dumps(doc).encode(), JSON, None, LATENT)
        assert req.mode == "reconstruct" and req.fmt == JSON
        assert req.rows.dtype == np.float32 and np.array_equal(req.rows, pixels)
    req = wire.parse(
        json.dumps({"inputs": [[0.5] * LATENT], "params": {"mode": "decode"}}).encode(), JSON, None, LATENT
    )
    assert req.mode == "decode" and req.rows.shape == (1, LATENT)


def test_npy_takes_float_pixels_uint8_pixels_and_codes(pixels):
    assert np.array_equal(wire.parse(npy_bytes(pixels), NPY, None, LATENT).rows, pixels)
    assert np.array_equal(wire.parse(npy_bytes(pixels.astype(np.float64)), NPY, None, LATENT).rows, pixels)
    as_bytes = np.round(pixels * 255).astype(np.uint8)
    req = wire.parse(npy_bytes(as_bytes), NPY, "encode", LATENT)
    assert req.mode == "encode" and np.array_equal(req.rows, as_bytes.astype(np.float32) / np.float32(255))
    codes = np.full((2, LATENT), 3.5, np.float32)  # codes are not pixels: any finite value
    assert np.array_equal(wire.parse(npy_bytes(codes), NPY, "decode", LATENT).rows, codes)


@pytest.mark.parametrize(
    ("body", "fmt", "mode", "status", "message"),
    [
        (b"", NPY, None, 400, "empty request body"),
        (b"not an array", NPY, None, 400, "does not start with numpy.save's header"),
        (npy_bytes(np.zeros((2, 784), np.float32))[:100], NPY, None, 400, "not a readable .npy array"),
        (b"\x93NUMPY" + b"\x01\x00" + b"x" * 30, NPY, None, 400, "not a readable .npy array"),
        (npy_bytes(np.zeros((2, 784), np.int32)), NPY, None, 400, "dtype int32 is not accepted: pixels are float32"),
        (npy_bytes(np.zeros((2, LATENT), np.uint8)), NPY, "decode", 400, "codes are float32 or float64"),
        (npy_bytes(np.zeros(784, np.float32)), NPY, None, 400, "expected a 2-D batch"),
        (npy_bytes(np.zeros((2, 783), np.float32)), NPY, None, 400, "expected 784 pixels per row, got 783"),
        (npy_bytes(np.full((1, 784), 2.0, np.float32)), NPY, None, 400, "pixels must lie in [0, 1]"),
        (npy_bytes(np.full((1, 784), np.nan, np.float32)), NPY, None, 400, "NaN or infinite"),
        (npy_bytes(np.zeros((101, 784), np.float32)), NPY, None, 400, "batch of 101 rows is over the limit of 100"),
        (
            npy_bytes(np.zeros((1, 784), np.float32)),
            NPY,
            "decode",
            400,
            f"expected {LATENT} code values per row, got 784",
        ),
        (npy_bytes(np.zeros((1, 784), np.float32)), NPY, "zip", 400, "mode 'zip' is not one of reconstruct, encode"),
        (b"{not json", JSON, None, 400, "body is not valid JSON"),
        (b"[[0.5]]", JSON, None, 400, "expected a JSON object"),
        (b'{"rows": [[0.5]]}', JSON, None, 400, "exactly one of inputs, instances, dataframe_split"),
        (b'{"inputs": [[0.5]], "instances": [[0.5]]}', JSON, None, 400, "exactly one of"),
        (b'{"dataframe_split": [[0.5]]}', JSON, None, 400, "dataframe_split must be an object"),
        (b'{"inputs": [[0.5]], "params": [1]}', JSON, None, 400, "params must be a JSON object"),
        (b'{"inputs": [[0.5]], "params": {"mdoe": "encode"}}', JSON, None, 400, "unknown param(s) mdoe"),
        (b'{"inputs": [["a"]]}', JSON, None, 400, "pixels must be numbers"),
        (b'{"inputs": [[0.5]], "params": {"mode": "zip"}}', JSON, None, 400, "mode 'zip' is not one of"),
    ],
)
def test_each_bad_request_is_refused_naming_the_problem(body, fmt, mode, status, message):
    refused = refusal(body, fmt, mode)
    assert refused.status == status and message in refused.message
    doc = json.loads(refused.body())  # MLflow's error body, whatever the request's format
    assert set(doc) == {"error_code", "message"} and doc["message"] == refused.message


def test_a_pickled_npy_array_is_refused_not_loaded():
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    assert "pickled arrays are refused" in refusal(buf.getvalue(), NPY).message


def test_content_types_and_the_size_refusal():
    assert wire.media_type("application/json; charset=utf-8") == JSON
    assert wire.media_type("Application/X-NPY") == NPY
    for bad in (None, "text/plain", "application/octet-stream"):
        with pytest.raises(Refused) as err:
            wire.media_type(bad)
        assert err.value.status == 415 and "application/x-npy" in err.value.message
    big = wire.too_large(40 * 2**20, 32 * 2**20)
    assert big.status == 413 and "41,943,040 bytes is over the limit of 33,554,432" in big.message


def test_answers_read_back_as_the_same_float32(pixels):
    out = (pixels * np.float32(0.37)).astype(np.float32)
    body, media = wire.answer(out, NPY)
    assert media == NPY and np.array_equal(np.load(io.BytesIO(body)), out)
    body, media = wire.answer(out, JSON)
    got = np.asarray(orjson.loads(body)["predictions"], dtype=np.float32)
    assert media == JSON and np.array_equal(got, out)
    # as MLflow's server writes it (float32 widened to float64 text): the same float32 values
    assert np.array_equal(
        np.asarray(json.loads(json.dumps({"predictions": out.tolist()}))["predictions"], np.float32), got
    )
