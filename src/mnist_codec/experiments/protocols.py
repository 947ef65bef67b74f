"""``mnist-codec protocol-table notebook`` (``make notebook-table``): the comparison table
under another protocol, from one DVC experiment, kept in ``reports/protocols/``.

The default run's table (``reports/comparison.md``) is the holdout protocol's. The notebook's
protocol (train and evaluate on all 70,000 images, as the notebook did) is one experiment:
``dvc exp run --temp -n protocol-notebook -S data.protocol=notebook``. Its table is read from
the experiment's own commit and written to ``reports/protocols/notebook.md`` and ``.csv``, with
the command that made it, so the docs show what the pipeline produced, not a copy.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DataError

log = logging.getLogger(__name__)

PROTOCOLS = ("notebook", "validation")
FILES = ("reports/comparison.md", "reports/comparison.csv")


def experiment_name(protocol: str) -> str:
    return f"protocol-{protocol}"


def overrides(protocol: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    if protocol not in PROTOCOLS:
        raise DataError(
            f"protocol-table: unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)} "
            "(holdout's table is the default run's, reports/comparison.md)"
        )
    return (f"data.protocol={protocol}", *extra)


def run(repo: Path, protocol: str, out_dir: Path, extra: tuple[str, ...] = ()) -> dict[str, Path]:
    """Run the protocol's experiment and write its table to ``out_dir/<protocol>.md`` and ``.csv``."""
    import shlex

    from .. import fileio
    from .exps import committed_file, latest_finished, show
    from .frontier import exp_run_command, run_experiment

    name = experiment_name(protocol)
    settings = overrides(protocol, extra)
    run_experiment(repo, name, settings)
    exp = latest_finished(show(repo)).get(name)
    if exp is None:
        raise DataError(f"no finished experiment named {name!r} after it ran (see `dvc exp show`)")
    command = shlex.join(exp_run_command(name, settings))
    md = committed_file(repo, exp.rev, FILES[0])
    written = {"md": out_dir / f"{protocol}.md", "csv": out_dir / f"{protocol}.csv"}
    fileio.write_text(written["md"], f"<!-- made by `{command}` (mnist-codec protocol-table {protocol}) -->\n{md}")
    fileio.write_text(written["csv"], committed_file(repo, exp.rev, FILES[1]))
    log.info("protocol-table: %s: %s, %s", name, written["md"], written["csv"])
    return written
