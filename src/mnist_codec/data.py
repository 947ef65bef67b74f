"""MNIST: fetch the four IDX files, verify them, parse them, and write the splits.

Raw files are checked by the size and SHA-256 of their *decompressed* bytes, so any
mirror's gzip of the original files is accepted. IDX parsing checks every header field
against the file's length before reading a pixel.
"""

from __future__ import annotations

import gzip
import json
import math
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import fileio
from .errors import DataError

IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MAX_DOWNLOAD = 64 << 20  # bytes; the largest file is ~10 MB gzipped


@dataclass(frozen=True)
class RawFile:
    name: str  # decompressed name; mirrors serve name + ".gz"
    size: int
    sha256: str


RAW_FILES = (
    RawFile("train-images-idx3-ubyte", 47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    RawFile("train-labels-idx1-ubyte", 60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    RawFile("t10k-images-idx3-ubyte", 7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    RawFile("t10k-labels-idx1-ubyte", 10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
)


# --- fetch ---------------------------------------------------------------------------------

def bundled_dir() -> Path:
    """Folder of the MNIST copy shipped inside the package."""
    return Path(str(resources.files("mnist_codec") / "datasets" / "mnist"))


def read_source(source: str, filename: str, timeout: float = 60.0) -> bytes:
    """Bytes of ``filename`` from ``source``: 'bundled' or a base URL (https, http, file)."""
    if source == "bundled":
        path = bundled_dir() / filename
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DataError(f"fetch: bundled file {path} cannot be read: {exc.strerror}") from None
    url = source if source.endswith("/") else source + "/"
    url += filename
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (scheme checked in params)
            data = resp.read(MAX_DOWNLOAD + 1)
    except urllib.error.HTTPError as exc:
        raise DataError(f"fetch: {url}: server answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"fetch: {url}: cannot download: {reason}") from None
    if len(data) > MAX_DOWNLOAD:
        raise DataError(f"fetch: {url}: larger than {MAX_DOWNLOAD} bytes; not an MNIST file")
    return data


def verify_gzip(blob: bytes, expected: RawFile, where: str) -> bytes:
    """Decompress ``blob`` and check its size and SHA-256; return the decompressed bytes."""
    try:
        raw = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        head = blob[:16]
        raise DataError(
            f"fetch: {where}: not a valid gzip file ({exc}); {len(blob)} bytes starting {head!r}"
        ) from None
    digest = fileio.sha256_bytes(raw)
    if len(raw) != expected.size or digest != expected.sha256:
        raise DataError(
            f"fetch: {where}: content does not match {expected.name}: expected {expected.size} bytes "
            f"with sha256 {expected.sha256}, found {len(raw)} bytes with sha256 {digest}"
        )
    return raw


def fetch(source: str, out_dir: str | Path) -> dict[str, str]:
    """Fetch, verify and write the four MNIST files to ``out_dir``; return name -> sha256.

    Every file is verified before any is written, and the folder is replaced as a whole:
    a failure leaves the previous verified files, or none, never a partial one.
    """
    out_dir = Path(out_dir)
    blobs = {}
    for f in RAW_FILES:
        gz_name = f.name + ".gz"
        where = f"{source} {gz_name}"
        blob = read_source(source, gz_name)
        verify_gzip(blob, f, where)
        blobs[gz_name] = blob
    # Only once all four are verified is anything written, and the folder is swapped in whole.
    with fileio.atomic_dir(out_dir) as tmp:
        for gz_name, blob in blobs.items():
            (tmp / gz_name).write_bytes(blob)
    return {f.name: f.sha256 for f in RAW_FILES}


# --- IDX parsing ---------------------------------------------------------------------------

def parse_idx(raw: bytes, magic: int, ndim: int, name: str) -> np.ndarray:
    """Parse an unsigned-byte IDX file, checking magic, dimensions and length.

    Raises DataError naming ``name`` and what was wrong; never reads past the buffer.
    """
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: file is {len(raw)} bytes, too short for an IDX header of {header} bytes")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise DataError(f"{name}: wrong magic number {found_magic}, expected {magic}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_len = header + math.prod(dims)
    if len(raw) != expected_len:
        raise DataError(
            f"{name}: header says dimensions {dims} ({expected_len} bytes) but the file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def parse_images(raw: bytes, name: str) -> np.ndarray:
    images = parse_idx(raw, IMAGES_MAGIC, 3, name)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{name}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    return images


def parse_labels(raw: bytes, name: str) -> np.ndarray:
    labels = parse_idx(raw, LABELS_MAGIC, 1, name)
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{name}: label {int(labels[bad])} at index {bad} is outside 0-9")
    return labels


def read_raw(raw_dir: str | Path, stem: str) -> bytes:
    path = Path(raw_dir) / f"{stem}.gz"
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; run the fetch stage first") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None


def load_pair(raw_dir: str | Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 784) uint8 and labels (N,) uint8 of ``prefix`` ('train' or 't10k')."""
    img_name, lbl_name = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    images = parse_images(read_raw(raw_dir, img_name), str(Path(raw_dir) / (img_name + ".gz")))
    labels = parse_labels(read_raw(raw_dir, lbl_name), str(Path(raw_dir) / (lbl_name + ".gz")))
    if len(images) != len(labels):
        raise DataError(f"{raw_dir}: {img_name} has {len(images)} images but {lbl_name} has {len(labels)} labels")
    return images.reshape(len(images), N_PIXELS), labels


# --- splits --------------------------------------------------------------------------------

def scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.astype(np.float32) / np.float32(255.0)


VALIDATION_SHARE = 6  # the validation protocol holds out the last 1/6 of the training images: 10,000 of 60,000


def make_splits(train: tuple, test: tuple, protocol: str, train_limit: int | None, eval_limit: int | None):
    """Arrays for the chosen protocol: {'train': (x, y), 'eval': (x, y)} (eval may be train).

    holdout: fit on the 60,000 training images, evaluate on the 10,000 test images.
    validation: fit on the first 50,000 training images, evaluate on the last 10,000 of
    them; the test images are not used. Settings are chosen here, then measured under holdout.
    notebook: fit and evaluate on all 70,000, as the reference notebook did.
    Limits keep the first N images (small profiles for tests and smoke runs).
    """
    if protocol == "holdout":
        tx, ty = train
        ex, ey = test
        splits = {"train": (tx[:train_limit], ty[:train_limit]), "eval": (ex[:eval_limit], ey[:eval_limit])}
    elif protocol == "validation":
        tx, ty = train
        cut = len(tx) - len(tx) // VALIDATION_SHARE
        splits = {"train": (tx[:cut][:train_limit], ty[:cut][:train_limit]),
                  "eval": (tx[cut:][:eval_limit], ty[cut:][:eval_limit])}
    elif protocol == "notebook":
        limit = train_limit
        x = np.concatenate([train[0], test[0]])[:limit]
        y = np.concatenate([train[1], test[1]])[:limit]
        pair = (x, y)
        splits = {"train": pair, "eval": pair}  # the same object: written once
    else:
        raise DataError(f"unknown protocol {protocol!r}")
    return splits


def preprocess(raw_dir: str | Path, out_dir: str | Path, protocol: str,
               train_limit: int | None = None, eval_limit: int | None = None) -> dict:
    """Parse the raw IDX files and write the splits to ``out_dir`` (atomically).

    Layout: train_x.npy (N, 784) uint8 pixels as in the IDX files, train_y.npy (N,) uint8,
    the same for eval (not written when eval is the training set), and meta.json. Pixels
    are scaled to [0, 1] when loaded (:func:`load_split`): the same float32 values as
    scaling here, in a quarter of the bytes for DVC to hash and cache. A split's
    ``sha256`` in meta.json identifies the data the codecs see: the digest of its float32
    pixels as an .npy file, the same digest as when splits were stored that way, so that
    registered versions and champions from before stay comparable.
    """
    splits = make_splits(load_pair(raw_dir, "train"), load_pair(raw_dir, "t10k"),
                         protocol, train_limit, eval_limit)
    eval_is_train = splits["eval"] is splits["train"]
    meta = {"protocol": protocol, "eval_is_train": eval_is_train, "splits": {}}
    with fileio.atomic_dir(out_dir) as tmp:
        for split in ("train",) if eval_is_train else ("train", "eval"):
            x, y = splits[split]
            np.save(tmp / f"{split}_x.npy", np.ascontiguousarray(x, dtype=np.uint8))
            np.save(tmp / f"{split}_y.npy", y)
            meta["splits"][split] = {"n": int(len(x)), "sha256": fileio.array_sha256(scale(x))}
        if eval_is_train:
            meta["splits"]["eval"] = meta["splits"]["train"]
        fileio.write_json(tmp / "meta.json", meta)
    return meta


def read_meta(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "meta.json"
    try:
        return fileio.read_json(path)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run the preprocess stage first") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def load_splits(data_dir: str | Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((x, y) of 'train', (x, y) of 'eval'); read and scaled once when eval is the training set."""
    train = load_split(data_dir, "train")
    return train, (train if read_meta(data_dir)["eval_is_train"] else load_split(data_dir, "eval"))


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (N, 784) in [0, 1], y uint8 (N,)) of 'train' or 'eval'; pixels are
    stored as uint8 and scaled here."""
    data_dir = Path(data_dir)
    meta = read_meta(data_dir)
    stem = "train" if (split == "eval" and meta["eval_is_train"]) else split
    try:
        x = np.load(data_dir / f"{stem}_x.npy", allow_pickle=False)
        y = np.load(data_dir / f"{stem}_y.npy", allow_pickle=False)
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{data_dir}: cannot read split '{split}': {exc}") from None
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != N_PIXELS or len(x) != len(y):
        raise DataError(f"{data_dir}: split '{split}' has shape {x.shape} {x.dtype}, expected (N, 784) uint8 "
                        f"(re-run the preprocess stage)")
    return scale(x), y
