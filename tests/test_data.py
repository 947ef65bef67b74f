import gzip

import numpy as np
import pytest

from mnist_codec import fileio
from mnist_codec.data import idx, mnist, prepare, splits
from mnist_codec.errors import DataError

from conftest import MirrorServer, idx_bytes, synthetic_digits, write_raw_dir

# --- IDX parsing ---------------------------------------------------------------------------


def test_parse_images_and_labels_round_trip():
    images, labels = synthetic_digits(12)
    got = idx.parse_images(idx_bytes(images, 2051), "img")
    assert got.shape == (12, 28, 28) and np.array_equal(got, images)
    assert np.array_equal(idx.parse_labels(idx_bytes(labels, 2049), "lbl"), labels)


@pytest.mark.parametrize(
    ("blob", "match"),
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
        idx.parse_images(blob, "train-images-idx3-ubyte")
    assert str(err.value).startswith("train-images-idx3-ubyte")


def test_label_out_of_range_is_reported_with_its_index():
    labels = np.array([3, 9, 10, 1], dtype=np.uint8)
    with pytest.raises(DataError, match="label 10 at index 2 is outside 0-9"):
        idx.parse_labels(idx_bytes(labels, 2049), "lbl")


def test_image_and_label_counts_must_agree(tmp_path):
    raw = write_raw_dir(tmp_path / "raw", n_train=20, n_test=5)
    _, labels = synthetic_digits(19)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, 2049)))
    with pytest.raises(DataError, match="has 20 images but train-labels-idx1-ubyte has 19 labels"):
        idx.load_pair(raw, "train")


# --- splits and preprocess -----------------------------------------------------------------


def test_holdout_and_notebook_splits(raw_dir, tmp_path):
    meta = prepare.preprocess(raw_dir, tmp_path / "hold", "holdout")
    x, _y = splits.load_split(tmp_path / "hold", "train")
    ex, ey = splits.load_split(tmp_path / "hold", "eval")
    assert (len(x), len(ex)) == (300, 100) and meta["eval_is_train"] is False
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert ey.dtype == np.uint8 and ey.max() <= 9

    prepare.preprocess(raw_dir, tmp_path / "nb", "notebook")
    nx, _ = splits.load_split(tmp_path / "nb", "train")
    nex, _ = splits.load_split(tmp_path / "nb", "eval")
    assert len(nx) == 400 and np.array_equal(nx, nex)
    assert np.array_equal(nx[:300], x) and np.array_equal(nx[300:], ex)  # train first, then test
    assert not (tmp_path / "nb" / "eval_x.npy").exists()  # no duplicate copy
    (tx, _), (tex, _) = splits.load_splits(tmp_path / "nb")
    assert tex is tx and np.array_equal(tx, nx)  # read and scaled once
    (hx, _), (hex_, _) = splits.load_splits(tmp_path / "hold")
    assert np.array_equal(hx, x) and np.array_equal(hex_, ex)


def test_validation_split_is_carved_from_the_training_images(raw_dir, tmp_path):
    meta = prepare.preprocess(raw_dir, tmp_path / "val", "validation")
    (vx, _), (vex, _) = splits.load_splits(tmp_path / "val")
    prepare.preprocess(raw_dir, tmp_path / "hold", "holdout")
    (hx, _), (hex_, _) = splits.load_splits(tmp_path / "hold")
    assert (len(vx), len(vex)) == (250, 50) and meta["protocol"] == "validation"  # the last sixth held out
    assert np.array_equal(np.concatenate([vx, vex]), hx)  # the training images, first 5/6 then the rest
    assert not any(np.array_equal(img, t) for img in vex[:10] for t in hex_)  # no test image in it


def test_pixels_are_stored_as_uint8_and_scaled_exactly_on_load(raw_dir, tmp_path):
    """A quarter of float32's bytes on disk (what DVC hashes and caches), and the loaded
    values are bit for bit those of scaling the IDX pixels to float32."""
    prepare.preprocess(raw_dir, tmp_path / "p", "holdout")
    stored = np.load(tmp_path / "p" / "train_x.npy")
    assert stored.dtype == np.uint8 and stored.shape == (300, 784)
    x, _ = splits.load_split(tmp_path / "p", "train")
    full, _ = idx.load_pair(raw_dir, "train")
    expected = full.astype(np.float32) / np.float32(255.0)
    assert x.dtype == np.float32 and np.array_equal(x.view(np.uint32), expected.view(np.uint32))


def test_a_splits_digest_is_that_of_its_float32_pixels_as_npy_whatever_the_storage(raw_dir, tmp_path):
    """The digest the registry and the champion rule compare: the float32 array's .npy bytes,
    as when splits were stored in float32."""
    meta = prepare.preprocess(raw_dir, tmp_path / "p", "holdout")
    x, _ = splits.load_split(tmp_path / "p", "eval")
    np.save(tmp_path / "f.npy", x)
    assert meta["splits"]["eval"]["sha256"] == fileio.sha256_file(tmp_path / "f.npy")


def test_a_float_split_from_before_uint8_storage_is_refused_by_name(raw_dir, tmp_path):
    prepare.preprocess(raw_dir, tmp_path / "p", "holdout")
    np.save(tmp_path / "p" / "train_x.npy", np.zeros((300, 784), np.float32))
    with pytest.raises(
        DataError,
        match=r"split 'train' has shape \(300, 784\) float32, expected .* uint8 "
        r"\(re-run the preprocess stage\)",
    ):
        splits.load_split(tmp_path / "p", "train")


def test_limits_keep_the_first_images(raw_dir, tmp_path):
    prepare.preprocess(raw_dir, tmp_path / "p", "holdout", train_limit=50, eval_limit=7)
    x, _ = splits.load_split(tmp_path / "p", "train")
    ex, _ = splits.load_split(tmp_path / "p", "eval")
    full, _ = idx.load_pair(raw_dir, "train")
    assert len(x) == 50 and len(ex) == 7
    assert np.allclose(x, full[:50] / 255.0)


# --- fetch (real MNIST: the bundled copy and mirrors of it) ---------------------------------


def test_fetch_bundled_verifies_and_writes_all_four(tmp_path):
    hashes = mnist.fetch("bundled", tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(f"{f.name}.gz" for f in mnist.RAW_FILES)
    assert hashes == {f.name: f.sha256 for f in mnist.RAW_FILES}


def test_fetch_from_a_file_mirror_with_other_gzip_bytes(good_mirror, tmp_path):
    mnist.fetch(good_mirror.as_uri(), tmp_path / "raw")
    images, labels = idx.load_pair(tmp_path / "raw", "t10k")
    assert images.shape == (10000, 784) and labels.shape == (10000,)


def test_fetch_over_http_from_127_0_0_1(good_mirror, tmp_path):
    server = MirrorServer(good_mirror)
    try:
        mnist.fetch(server.url, tmp_path / "raw")
    finally:
        server.stop()
    assert idx.load_pair(tmp_path / "raw", "train")[0].shape == (60000, 784)
