"""The stage runner every ``stages/<stage>.py`` goes through: params and output paths checked
before any work, logging set up, expected errors as one line, signals, timing.

A side channel of the stages: it decides whether a stage's body runs, never what it writes
(the body reads every value from params.yaml, see :func:`mnist_codec.params.load`).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import MnistCodecError, ParamsError
from .params import Params, load

# The only folders of the repository a stage writes to (MLflow adds mlruns/ and mlflow.db).
WRITABLE = ("data", "models", "reports")


def check_outputs(paths: Iterable[str | Path], root: Path) -> None:
    """Refuse any output path that resolves (``..`` and symlinks followed) outside
    ``root``/data, ``root``/models or ``root``/reports."""
    root = root.resolve()
    for path in paths:
        resolved = (Path.cwd() / path).resolve()
        try:
            parts = resolved.relative_to(root).parts
        except ValueError:
            parts = ()
        if not parts or parts[0] not in WRITABLE or len(parts) < 2:
            raise ParamsError(
                f"output path {str(path)!r} resolves to {resolved}, outside "
                f"{', '.join(f'{root / w}/' for w in WRITABLE)}; refusing to write there"
            )


def setup_logging() -> None:
    """The project's loggers as plain lines: results (INFO) on stdout, warnings on stderr, and
    per-epoch progress (``mnist_codec.progress``) on stderr, apart from the results."""
    log = logging.getLogger("mnist_codec")
    if any(h.get_name() == "mnist_codec" for h in log.handlers):
        return
    results = logging.StreamHandler(sys.stdout)
    results.addFilter(lambda record: record.levelno < logging.WARNING)
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    progress = logging.StreamHandler(sys.stderr)
    for logger, handler in ((log, results), (log, warnings), (logging.getLogger("mnist_codec.progress"), progress)):
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.set_name("mnist_codec")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    logging.getLogger("mnist_codec.progress").propagate = False


def run_stage(
    name: str, params_path: str | Path, body: Callable[[Params], None], outputs: Iterable[str | Path] = ()
) -> None:
    """Validate all params and output paths, then run ``body``.

    Expected errors become one line and exit 2; Ctrl-C and SIGTERM exit 130. A stage that
    succeeds appends its timing to the file ``MNIST_CODEC_TIMINGS`` names, if set
    (see :mod:`mnist_codec.timing`).
    """
    from . import interrupts, timing
    from .workspace import workspace_root

    setup_logging()
    interrupts.install()  # SIGTERM unwinds like Ctrl-C, never in the middle of an MLflow write
    try:
        params = load(params_path, complete=True)
        check_outputs(outputs, workspace_root())
        body(params)
        timing.write_record(name)
        # The process ends next. Python's teardown runs garbage collections over every object
        # still alive, over a second with torch and MLflow loaded; frozen objects are skipped
        # (exit handlers still run, files still close) and the OS frees the memory at once.
        gc.freeze()
    except MnistCodecError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        from .tracking.store import failure_message

        message = failure_message(exc)  # a tracking server gone or refusing: one line, not a traceback
        if message is None:
            raise
        print(f"{name}: error: {message}", file=sys.stderr)
        sys.exit(2)


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser
