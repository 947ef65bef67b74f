"""The four MNIST files: read from the bundled copy or a mirror, verified, written together.

Raw files are checked by the size and SHA-256 of their *decompressed* bytes, so any
mirror's gzip of the original files is accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import DataError

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
        with urllib.request.urlopen(url, timeout=timeout) as resp:
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
        raise DataError(f"fetch: {where}: not a valid gzip file ({exc}); {len(blob)} bytes starting {head!r}") from None
    digest = hashlib.sha256(raw).hexdigest()
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
    with atomic_dir(out_dir) as tmp:
        for gz_name, blob in blobs.items():
            (tmp / gz_name).write_bytes(blob)
    return {f.name: f.sha256 for f in RAW_FILES}
