"""Data faults: bad mirrors and bad IDX files fail loudly and leave the data as it was.

Every fault must give one clear error naming the file and what was wrong, and leave
``data/raw`` and ``data/processed`` with their previous verified content (or absent when
there was none): never a partial file.
"""

import contextlib
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_codec.data import idx, mnist, prepare
from mnist_codec.errors import DataError

from conftest import MirrorServer, idx_bytes, synthetic_digits, write_raw_dir
from services import free_port


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (temporary leftovers included) -> its bytes."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_leftovers(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(".")]


# --- mirrors -------------------------------------------------------------------------------


def flip_a_byte(blob: bytes) -> bytes:
    b = bytearray(blob)
    b[len(b) // 2] ^= 0xFF  # inside the deflate stream
    return bytes(b)


def html_page(_: bytes) -> bytes:
    return b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


def wrong_content(blob: bytes) -> bytes:
    raw = bytearray(gzip.decompress(blob))
    raw[100] ^= 0x01  # a valid gzip of content one bit away from MNIST's
    return gzip.compress(bytes(raw))


MIRROR_FAULTS = [
    # (id, file, how its bytes are damaged, what the error must say)
    ("flipped-byte", "train-labels-idx1-ubyte.gz", flip_a_byte, "not a valid gzip file|content does not match"),
    ("cut-short", "t10k-images-idx3-ubyte.gz", lambda b: b[:-1], "not a valid gzip file"),
    ("html-error-page", "train-images-idx3-ubyte.gz", html_page, r"not a valid gzip file .* starting b'<!DOCTYPE html"),
    (
        "wrong-content",
        "t10k-labels-idx1-ubyte.gz",
        wrong_content,
        "content does not match t10k-labels-idx1-ubyte: expected 10008 bytes with sha256 ff7bcfd4",
    ),
]


@pytest.fixture
def previous_raw(tmp_path) -> Path:
    """data/raw holding a previous verified fetch."""
    raw = tmp_path / "data" / "raw"
    mnist.fetch("bundled", raw)
    return raw


@pytest.mark.parametrize("transport", ["http", "file"])
@pytest.mark.parametrize(("fault_id", "name", "damage", "message"), MIRROR_FAULTS, ids=[f[0] for f in MIRROR_FAULTS])
def test_a_damaged_mirror_file_is_refused_and_raw_data_is_kept(
    good_mirror, previous_raw, tmp_path, transport, fault_id, name, damage, message
):
    bad = tmp_path / "bad-mirror"
    shutil.copytree(good_mirror, bad)
    (bad / name).write_bytes(damage((bad / name).read_bytes()))
    before = snapshot(previous_raw)
    server = MirrorServer(bad) if transport == "http" else None
    source = server.url if server else bad.as_uri()
    try:
        with pytest.raises(DataError, match=message) as err:
            mnist.fetch(source, previous_raw)
        with pytest.raises(DataError):  # and into an empty folder: nothing appears
            mnist.fetch(source, tmp_path / "fresh" / "raw")
    finally:
        if server:
            server.stop()
    assert name in str(err.value) and source.rstrip("/") in str(err.value)
    assert snapshot(previous_raw) == before
    assert no_leftovers(previous_raw.parent)
    assert not (tmp_path / "fresh" / "raw").exists()


def test_a_mirror_that_does_not_answer(previous_raw, tmp_path):
    port = free_port()  # a port on 127.0.0.1 that nobody listens on
    before = snapshot(previous_raw)
    for source in (f"http://127.0.0.1:{port}/mnist", (tmp_path / "no-such-mirror").as_uri()):
        with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot download"):
            mnist.fetch(source, previous_raw)
    assert snapshot(previous_raw) == before


def test_a_mirror_missing_a_file_names_it(good_mirror, tmp_path):
    server = MirrorServer(good_mirror)
    try:
        with pytest.raises(DataError, match=r"/nowhere/train-images-idx3-ubyte.gz: server answered HTTP 404"):
            mnist.fetch(server.url + "nowhere", tmp_path / "raw")
    finally:
        server.stop()
    assert not (tmp_path / "raw").exists()


# --- IDX files -----------------------------------------------------------------------------


def _images(n=20):
    return synthetic_digits(n)[0]


IDX_FAULTS = [
    # (id, file to replace, its decompressed bytes, what the error must say)
    ("wrong-magic", "train-images-idx3-ubyte", idx_bytes(_images(), 2049), "wrong magic number 2049, expected 2051"),
    (
        "wrong-ndim",
        "train-images-idx3-ubyte",
        idx_bytes(_images().reshape(20, 784), 2050),
        "wrong magic number 2050, expected 2051",
    ),
    (
        "count-disagrees-with-length",
        "t10k-images-idx3-ubyte",
        idx_bytes(_images(), 2051)[:-28],
        r"header says dimensions \(20, 28, 28\) \(15696 bytes\) but the file has 15668 bytes",
    ),
    (
        "label-10",
        "t10k-labels-idx1-ubyte",
        idx_bytes(np.array([3, 9, 10, 1], np.uint8), 2049),
        "label 10 at index 2 is outside 0-9",
    ),
    (
        "labels-disagree-with-images",
        "train-labels-idx1-ubyte",
        idx_bytes(synthetic_digits(299)[1], 2049),
        "has 300 images but train-labels-idx1-ubyte has 299 labels",
    ),
    ("html-instead-of-gzip", "t10k-labels-idx1-ubyte", None, "t10k-labels-idx1-ubyte.gz: not a valid gzip file"),
]


@pytest.mark.parametrize(("fault_id", "stem", "raw", "message"), IDX_FAULTS, ids=[f[0] for f in IDX_FAULTS])
def test_a_bad_idx_file_fails_preprocess_and_keeps_processed_data(tmp_path, fault_id, stem, raw, message):
    raw_dir = write_raw_dir(tmp_path / "data" / "raw")
    processed = tmp_path / "data" / "processed"
    prepare.preprocess(raw_dir, processed, "holdout")
    before = snapshot(processed)
    blob = b"<html>not found</html>" if raw is None else gzip.compress(raw)
    (raw_dir / f"{stem}.gz").write_bytes(blob)
    with pytest.raises(DataError, match=message) as err:
        prepare.preprocess(raw_dir, processed, "holdout")
    assert stem in str(err.value)
    assert snapshot(processed) == before
    assert no_leftovers(processed.parent)
    with pytest.raises(DataError, match=message):  # nothing appears where there was nothing
        prepare.preprocess(raw_dir, tmp_path / "fresh", "holdout")
    assert not (tmp_path / "fresh").exists()


@settings(max_examples=300, deadline=None)
@given(
    magic=st.sampled_from([2049, 2051, 0, 2052]),
    dims=st.lists(st.integers(0, 2**32 - 1), max_size=4),
    tail=st.binary(max_size=64),
)
def test_random_headers_and_lengths_raise_only_the_projects_error(magic, dims, tail):
    blob = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + tail
    for ndim, magic_expected in ((3, 2051), (1, 2049)):
        try:
            arr = idx.parse_idx(blob, magic_expected, ndim, "f")
        except DataError:
            continue
        # Accepted only when header and length agree exactly: nothing read out of bounds.
        assert arr.size == len(blob) - 4 - 4 * ndim


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_the_projects_error(blob):
    for parse in (idx.parse_images, idx.parse_labels):
        with contextlib.suppress(DataError):
            parse(blob, "f")
