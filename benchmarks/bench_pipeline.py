"""``make bench``: the mnist-codec pipeline timed side by side with what it is measured against, on
one machine; one module a benchmark in ``benchmarks/bench/`` (see :mod:`bench.run`).

Usage (from the project root):
    .venv/bin/python benchmarks/bench_pipeline.py [--only notebook|seeds|precision|plans|cluster|serve]
        [--rounds 2] [--before REF]
"""

from __future__ import annotations

import sys

from bench.run import main

if __name__ == "__main__":
    sys.exit(main())
