"""Progress of a training stage: a tqdm bar per model on a terminal, one line per epoch in logs.

A side channel of the stages: it shows losses, it decides none.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .codecs.train import EpochResult


@contextmanager
def epoch_progress(names: list[str], epochs: int) -> Iterator:
    """Yield ``report(name, result)``, called once per finished epoch of model ``name``."""
    import logging

    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    log = logging.getLogger("mnist_codec.progress")
    bars = {
        name: tqdm(total=epochs, desc=name, unit="epoch", position=k, disable=not interactive, file=sys.stderr)
        for k, name in enumerate(names)
    }

    def report(name: str, r: EpochResult) -> None:
        if interactive:
            bars[name].set_postfix(train=f"{r.train_loss:.6f}", eval=f"{r.eval_loss:.6f}")
            bars[name].update(1)
        else:
            log.info(
                "%s: epoch %d/%d train_loss %.6f eval_loss %.6f (%.1f s)",
                name,
                r.epoch,
                epochs,
                r.train_loss,
                r.eval_loss,
                r.seconds,
            )

    try:
        yield report
    finally:
        for bar in bars.values():
            bar.close()
