"""From the raw IDX files to the processed splits: what the preprocess stage does."""

from __future__ import annotations

from pathlib import Path

from . import idx, splits


def preprocess(
    raw_dir: str | Path,
    out_dir: str | Path,
    protocol: str,
    train_limit: int | None = None,
    eval_limit: int | None = None,
) -> dict:
    """Parse the raw IDX files and write the ``protocol`` split to ``out_dir`` (atomically,
    :func:`mnist_codec.data.splits.write_splits`); return its meta.json."""
    parts = splits.make_splits(
        idx.load_pair(raw_dir, "train"), idx.load_pair(raw_dir, "t10k"), protocol, train_limit, eval_limit
    )
    return splits.write_splits(parts, protocol, out_dir)
