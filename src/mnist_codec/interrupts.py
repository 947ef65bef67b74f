"""Ctrl-C and SIGTERM, held off while a write to the MLflow store is in flight.

A stage unwinds on SIGINT or SIGTERM by raising KeyboardInterrupt, so that MLflow runs end
KILLED and temporary files are removed. Raised in the middle of a database transaction,
that exception can leave the sqlite store locked for the very write that marks the run
KILLED. So the stage installs these handlers, and writes to the store run inside
:func:`deferred`: a signal arriving there is noted and raised as soon as the write is done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_state = threading.local()
_pending: list[int] = []
_installed = False


def _handler(signum: int, frame: FrameType | None) -> None:
    if getattr(_state, "depth", 0) > 0:
        _pending.append(signum)  # raised when the write in flight is done
        return
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """Route SIGINT and SIGTERM through the deferring handler (main thread only)."""
    global _installed
    signal.signal(signal.SIGTERM, _handler)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # keep an ignored Ctrl-C ignored
        signal.signal(signal.SIGINT, _handler)
    _installed = True


@contextmanager
def deferred() -> Iterator[None]:
    """Hold off an installed SIGINT/SIGTERM until the block ends; then raise it."""
    if not _installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _pending:
            signum = _pending.pop()
            _pending.clear()
            raise KeyboardInterrupt(f"signal {signum}")
