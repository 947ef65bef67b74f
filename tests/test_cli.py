"""The ``mnist-codec`` command as a user types it (mnist_codec.cli): a digit encoded and decoded
through the champion of a real MLflow store, and bad input refused in one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from mnist_codec.data import splits
from mnist_codec.tracking import registry

from smoke import env_for


def eval_split(root: Path) -> np.ndarray:
    return splits.load_split(root / "data/processed", "eval")[0]


def versions(registry_client) -> list:
    return sorted(
        registry_client.search_model_versions(f"name = '{registry.REGISTERED_MODEL}'"), key=lambda v: int(v.version)
    )


def mnist_codec(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "mnist-codec"), *args],
        cwd=root,
        env=env_for(root),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_encode_and_decode_a_png_through_the_champion(registered, registry_client, tmp_path):
    import mlflow

    from mnist_codec.serving import digits

    x = eval_split(registered)[:1]
    digits.write_digit_png(tmp_path / "digit.png", x[0])
    enc = mnist_codec(registered, "encode", str(tmp_path / "digit.png"))
    assert enc.returncode == 0, enc.stderr
    code = np.array(enc.stdout.split(), dtype=np.float32)
    model = mlflow.pyfunc.load_model("models:/mnist-codec@champion")
    pixels = digits.read_digit_png(tmp_path / "digit.png")  # what the PNG holds (8-bit)
    assert np.allclose(code, model.predict(pixels, params={"mode": "encode"})[0], atol=1e-6)
    dec = mnist_codec(registered, "decode", "--out", str(tmp_path / "back.png"), stdin=enc.stdout)
    assert dec.returncode == 0, dec.stderr
    back = digits.read_digit_png(tmp_path / "back.png")
    expected = np.clip(model.predict(code[None, :], params={"mode": "decode"}), 0, 1)  # a PNG holds [0, 1]
    assert np.abs(back - expected).max() <= 0.5 / 255 + 1e-6
    version = str(versions(registry_client)[-1].version)
    by_number = mnist_codec(registered, "encode", str(tmp_path / "digit.png"), "--model", version)
    assert by_number.returncode == 0 and f"models:/mnist-codec/{version}" in by_number.stderr


def test_the_command_line_refuses_bad_input_clearly(registered, registry_client, tmp_path):
    from PIL import Image

    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    big = mnist_codec(registered, "encode", str(tmp_path / "big.png"))
    assert big.returncode == 2 and "image is 64x64 pixels; the codec takes 28x28" in big.stderr
    short = mnist_codec(registered, "decode", "--out", str(tmp_path / "x.png"), "1", "2")
    assert short.returncode == 2 and "the model's code has 32 numbers, got 2" in short.stderr
    assert not (tmp_path / "x.png").exists()
    missing = mnist_codec(registered, "encode", str(tmp_path / "big.png"), "--model", "999")
    assert missing.returncode == 2  # the size check comes first
    Image.new("L", (28, 28)).save(tmp_path / "ok.png")
    missing = mnist_codec(registered, "encode", str(tmp_path / "ok.png"), "--model", "999")
    assert missing.returncode == 2 and "models:/mnist-codec/999: not found" in missing.stderr
    assert "Traceback" not in missing.stderr
