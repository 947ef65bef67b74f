"""Stage preprocess: parse the raw IDX files and write the ``data.protocol`` split."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import timing
from ..data import prepare
from ..params import Params

log = logging.getLogger(__name__)


def run(params: Params, raw_dir: Path, out_dir: Path) -> None:
    d = params.data
    with timing.work("preprocess"):
        meta = prepare.preprocess(raw_dir, out_dir, d.protocol, d.train_limit, d.eval_limit)
    n_train, n_eval = meta["splits"]["train"]["n"], meta["splits"]["eval"]["n"]
    log.info(
        "preprocess: protocol %s: %d training and %d evaluation images in %s", d.protocol, n_train, n_eval, out_dir
    )
