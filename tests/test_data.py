import gzip
import http.server
import shutil
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_codec import data
from mnist_codec.errors import DataError

from conftest import idx_bytes, synthetic_digits, write_raw_dir


# --- IDX parsing ---------------------------------------------------------------------------

def test_parse_images_and_labels_round_trip():
    images, labels = synthetic_digits(12)
    got = data.parse_images(idx_bytes(images, 2051), "img")
    assert got.shape == (12, 28, 28) and np.array_equal(got, images)
    assert np.array_equal(data.parse_labels(idx_bytes(labels, 2049), "lbl"), labels)


@pytest.mark.parametrize(
    "blob, match",
    [
        (idx_bytes(np.zeros((3, 28, 28)), 2049), "wrong magic number 2049, expected 2051"),
        (idx_bytes(np.zeros((3, 28 * 28)), 2050), "wrong magic number 2050"),  # two dimensions
        (idx_bytes(np.zeros((3, 28, 28)), 2051)[:-1], r"header says dimensions \(3, 28, 28\)"),
        (idx_bytes(np.zeros((3, 28, 28)), 2051) + b"\0", "but the file has 2369 bytes"),
        (idx_bytes(np.zeros((3, 27, 28)), 2051), "images are 27x28"),
        (b"\x00\x00\x08", "too short for an IDX header"),
    ],
)
def test_bad_image_files_name_the_problem(blob, match):
    with pytest.raises(DataError, match=match) as err:
        data.parse_images(blob, "train-images-idx3-ubyte")
    assert str(err.value).startswith("train-images-idx3-ubyte")


def test_label_out_of_range_is_reported_with_its_index():
    labels = np.array([3, 9, 10, 1], dtype=np.uint8)
    with pytest.raises(DataError, match="label 10 at index 2 is outside 0-9"):
        data.parse_labels(idx_bytes(labels, 2049), "lbl")


@settings(max_examples=300, deadline=None)
@given(magic=st.sampled_from([2049, 2051, 0, 2052]), dims=st.lists(st.integers(0, 2**32 - 1), max_size=4),
       tail=st.binary(max_size=64))
def test_parser_raises_only_its_own_error_on_arbitrary_headers(magic, dims, tail):
    blob = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + tail
    for ndim, magic_expected in ((3, 2051), (1, 2049)):
        try:
            arr = data.parse_idx(blob, magic_expected, ndim, "f")
        except DataError:
            continue
        # Accepted only when header and length agree exactly: nothing read out of bounds.
        assert arr.size == len(blob) - 4 - 4 * ndim


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parser_survives_random_bytes(blob):
    for parse in (data.parse_images, data.parse_labels):
        try:
            parse(blob, "f")
        except DataError:
            pass


def test_image_and_label_counts_must_agree(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", n_train=20, n_test=5)
    _, labels = synthetic_digits(19)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, 2049)))
    with pytest.raises(DataError, match="has 20 images but train-labels-idx1-ubyte has 19 labels"):
        data.load_pair(raw, "train")


def test_missing_and_non_gzip_raw_files_are_named(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", n_train=10, n_test=5)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: not a valid gzip file"):
        data.load_pair(raw, "t10k")
    (raw / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: file not found"):
        data.load_pair(raw, "train")


# --- splits and preprocess -----------------------------------------------------------------

def test_holdout_and_notebook_splits(raw_dir, tmp_path):
    meta = data.preprocess(raw_dir, tmp_path / "hold", "holdout")
    x, y = data.load_split(tmp_path / "hold", "train")
    ex, ey = data.load_split(tmp_path / "hold", "eval")
    assert (len(x), len(ex)) == (300, 100) and meta["eval_is_train"] is False
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert ey.dtype == np.uint8 and ey.max() <= 9

    data.preprocess(raw_dir, tmp_path / "nb", "notebook")
    nx, _ = data.load_split(tmp_path / "nb", "train")
    nex, _ = data.load_split(tmp_path / "nb", "eval")
    assert len(nx) == 400 and np.array_equal(nx, nex)
    assert np.array_equal(nx[:300], x) and np.array_equal(nx[300:], ex)  # train first, then test
    assert not (tmp_path / "nb" / "eval_x.npy").exists()  # no duplicate copy


def test_limits_keep_the_first_images(raw_dir, tmp_path):
    data.preprocess(raw_dir, tmp_path / "p", "holdout", train_limit=50, eval_limit=7)
    x, _ = data.load_split(tmp_path / "p", "train")
    ex, _ = data.load_split(tmp_path / "p", "eval")
    full, _ = data.load_pair(raw_dir, "train")
    assert len(x) == 50 and len(ex) == 7
    assert np.allclose(x, full[:50] / 255.0)


def test_failed_preprocess_leaves_previous_output_untouched(raw_dir, tmp_path):
    out = tmp_path / "processed"
    data.preprocess(raw_dir, out, "holdout")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (raw_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01junk"))
    with pytest.raises(DataError):
        data.preprocess(raw_dir, out, "holdout")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp leftovers


# --- fetch (real MNIST: the bundled copy and mirrors of it) ---------------------------------

@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A mirror folder serving the real files, gzipped differently from the bundled copy."""
    folder = tmp_path_factory.mktemp("mirror")
    for f in data.RAW_FILES:
        raw = gzip.decompress((data.bundled_dir() / f"{f.name}.gz").read_bytes())
        (folder / f"{f.name}.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    return folder


def test_fetch_bundled_verifies_and_writes_all_four(tmp_path):
    hashes = data.fetch("bundled", tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(f"{f.name}.gz" for f in data.RAW_FILES)
    assert hashes == {f.name: f.sha256 for f in data.RAW_FILES}


def test_fetch_from_a_file_mirror_with_other_gzip_bytes(mirror, tmp_path):
    data.fetch(mirror.as_uri(), tmp_path / "raw")
    images, labels = data.load_pair(tmp_path / "raw", "t10k")
    assert images.shape == (10000, 784) and labels.shape == (10000,)


def _serve(folder: Path):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def test_fetch_over_http_and_a_missing_file(mirror, tmp_path):
    server, thread = _serve(mirror)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        data.fetch(base, tmp_path / "raw")
        assert len(list((tmp_path / "raw").iterdir())) == 4
        with pytest.raises(DataError, match=r"/nowhere/train-images-idx3-ubyte.gz: server answered HTTP 404"):
            data.fetch(base + "nowhere", tmp_path / "raw2")
        assert not (tmp_path / "raw2").exists()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_corrupt_mirror_file_names_file_and_hashes_and_writes_nothing(mirror, tmp_path):
    bad = tmp_path / "bad-mirror"
    shutil.copytree(mirror, bad)
    labels_gz = bad / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels_gz.read_bytes()))
    raw[100] ^= 0x01  # one flipped bit in a label: a valid gzip of the wrong content
    labels_gz.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError) as err:
        data.fetch(bad.as_uri(), tmp_path / "raw")
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and bad.as_uri() in msg
    assert "expected 10008 bytes with sha256 ff7bcfd4" in msg and "found 10008 bytes with sha256" in msg
    assert not (tmp_path / "raw").exists()


def test_unreachable_mirror_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="cannot download"):
        data.fetch((tmp_path / "no-such-dir").as_uri(), tmp_path / "raw")
