"""The side-by-side benchmarks of ``make bench`` (``benchmarks/bench_pipeline.py``): one module a
benchmark, what they share in :mod:`.common`, the command in :mod:`.run`. tests/services.py is the
one home of what tests and benchmarks start (a project copy, a server on a free port, a POST):
the package puts tests/ on the path for it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
