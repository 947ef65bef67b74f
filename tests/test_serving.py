"""The served codec's logic, without MLflow: request checks, modes, artifacts, PNG files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_codec.codecs import models
from mnist_codec.serving import digits as digit_png
from mnist_codec.serving import model as serving
from mnist_codec.serving.model import BadInput


@pytest.fixture
def codec():
    torch.manual_seed(0)
    return models.build({"kind": "deep", "latent_dim": 8, "hidden": [32], "activation": "relu"}).eval()


@pytest.mark.parametrize(
    ("values", "width", "pixels", "message"),
    [
        ([[0.5] * 783], 784, True, "expected 784 pixels per row, got 783"),
        ([[0.5] * 785], 784, True, "expected 784 pixels per row, got 785"),
        ([[0.5] * 784, [0.5] * 10], 784, True, "must be numbers"),
        ([[np.nan] + [0.5] * 783], 784, True, "1 value(s) are NaN or infinite (first at row 0, column 0)"),
        ([[0.5, np.inf, 0.5]], 3, False, "NaN or infinite (first at row 0, column 1)"),
        ([[1.5] * 784], 784, True, "pixels must lie in [0, 1]"),
        ([[-0.01] + [0.5] * 783], 784, True, "found values from -0.01 to 0.5. They are refused, not clipped"),
        ([["a"] * 784], 784, True, "pixels must be numbers"),
        (np.zeros((0, 784)), 784, True, "empty batch"),
        (np.zeros((11, 784)), 784, True, "batch of 11 rows is over the limit of 10 per request"),
        ([0.5] * 784, 784, True, "expected a 2-D batch"),
        ([[2.0] * 8], 8, False, None),  # codes are not pixels: any finite value
    ],
)
def test_check_batch_names_each_problem(values, width, pixels, message):
    if message is None:
        out = serving.check_batch(values, width, pixels, max_rows=10)
        assert out.dtype == np.float32 and out.shape == (1, 8)
        return
    with pytest.raises(BadInput) as err:
        serving.check_batch(values, width, pixels, max_rows=10)
    assert message in str(err.value)


def test_modes_match_the_codec(codec, digits):
    x = digits[0][:5]
    with torch.no_grad():
        z = codec.encode(torch.from_numpy(x))
        recon = codec.decode(z).numpy()
    assert np.array_equal(serving.predict(codec, 8, x), recon)
    assert np.array_equal(serving.predict(codec, 8, x, "encode"), z.numpy())
    assert np.array_equal(serving.predict(codec, 8, z.numpy(), "decode"), recon)
    with pytest.raises(BadInput, match="expected 8 code values per row, got 784"):
        serving.predict(codec, 8, x, "decode")
    with pytest.raises(BadInput, match="mode 'compress' is not one of reconstruct, encode, decode"):
        serving.predict(codec, 8, x, "compress")


def test_artifacts_round_trip_without_pickle(codec, tmp_path, digits):
    spec = {"kind": "deep", "latent_dim": 8, "hidden": [32], "activation": "relu"}
    paths = serving.write_artifacts(codec, spec, tmp_path)
    loaded, loaded_spec = serving.load_codec(paths["spec"], paths["weights"])
    assert loaded_spec == spec
    x = torch.from_numpy(digits[0][:4])
    with torch.no_grad():
        assert torch.equal(loaded(x), codec(x))


# a planted pickle in the weights file: tests/faults/test_security.py, with every other loader


def test_png_round_trip_and_size_error(tmp_path, digits):
    x = digits[0][0]
    digit_png.write_digit_png(tmp_path / "d.png", x)
    back = digit_png.read_digit_png(tmp_path / "d.png")
    assert back.shape == (1, 784) and np.abs(back[0] - x).max() <= 0.5 / 255 + 1e-7
    from PIL import Image

    Image.new("L", (32, 32)).save(tmp_path / "big.png")
    with pytest.raises(BadInput, match="image is 32x32 pixels; the codec takes 28x28"):
        digit_png.read_digit_png(tmp_path / "big.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(BadInput, match="not a readable image"):
        digit_png.read_digit_png(tmp_path / "text.png")
    with pytest.raises(BadInput, match="no such file"):
        digit_png.read_digit_png(tmp_path / "missing.png")


def test_codes_print_and_parse_exactly():
    code = np.random.default_rng(0).normal(size=32).astype(np.float32)
    text = digit_png.format_code(code)
    assert np.array_equal(digit_png.parse_code(text.split(), 32)[0], code)
    with pytest.raises(BadInput, match="the model's code has 32 numbers, got 3"):
        digit_png.parse_code(["1", "2", "3"], 32)
    with pytest.raises(BadInput, match="a code is 32 numbers"):
        digit_png.parse_code(["x"] * 32, 32)
