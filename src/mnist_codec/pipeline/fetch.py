"""Stage fetch: the four MNIST files from ``data.source``, verified, into the raw folder."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import timing
from ..data import mnist
from ..params import Params

log = logging.getLogger(__name__)


def run(params: Params, out_dir: Path) -> None:
    with timing.work("fetch"):
        hashes = mnist.fetch(params.data.source, out_dir)
    log.info("fetch: %d MNIST files from %s verified into %s", len(hashes), params.data.source, out_dir)
