"""Options more than one ``mnist-codec`` command takes, built once: ``-S KEY=VALUE``."""

from __future__ import annotations

import argparse

from ..errors import ParamsError


def set_param(parser: argparse.ArgumentParser, applies_to: str, example: str = "") -> None:
    """``-S KEY=VALUE``, repeatable, as ``dvc exp run -S`` takes it; ``applies_to``: where it goes."""
    parser.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"an override {applies_to}, as `dvc exp run -S` takes it" + (f", e.g. -S {example}" if example else ""),
    )


def overrides(command: str, values: list[str]) -> tuple[str, ...]:
    """``-S KEY=VALUE`` overrides, checked for their form (their values are checked by the stages)."""
    for override in values:
        key, eq, _ = override.partition("=")
        if not eq or not key:
            raise ParamsError(f"{command}: -S {override!r} is not KEY=VALUE (as dvc exp run -S takes)")
    return tuple(values)
