"""The ``mnist-codec`` command. Each module here adds its subcommands and runs them:

* :mod:`.results` -- ``gate``, ``accept``, ``check-params``, ``readme``: the committed results;
* :mod:`.models` -- ``encode``, ``decode``, ``serve``, ``server``, ``ui``: registered codecs and
  the servers around them;
* :mod:`.experiments` -- ``sweep``, ``sweep-report``, ``frontier``, ``tune``, ``protocol-table``:
  experiments beyond the pipeline.

A command imports what it runs when it runs, so ``mnist-codec gate`` never loads torch. No stage
imports this package (stages go through :mod:`mnist_codec.runner`).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import MnistCodecError


def parser() -> argparse.ArgumentParser:
    from . import experiments, models, results

    top = argparse.ArgumentParser(prog="mnist-codec", description="mnist-codec pipeline tools")
    sub = top.add_subparsers(dest="command", required=True)
    for module in (results, models, experiments):
        module.add(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ..runner import setup_logging

    setup_logging()
    try:
        return int(args.func(args))
    except MnistCodecError as exc:
        print(f"mnist-codec {args.command}: error: {exc}", file=sys.stderr)
        return 2
