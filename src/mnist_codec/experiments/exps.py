"""The pipeline's DVC experiments, read with ``dvc.api.exp_show``.

Rows come in DVC's order: the commits from HEAD back (every first-parent commit), under each
its experiments newest first, so the first row of a name is its latest run. A row's metrics
are metrics.json's headline columns (``ae.mse``, ``ae.mse_ci95``, ``ae.n_seeds``); the rest,
such as each seed's MSE, is in the experiment's commit (reports/metrics_detail.json).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

METRICS = "reports/metrics.json"
DETAIL = "reports/metrics_detail.json"
PARAMS = "params.yaml"
PENDING = ("Queued", "Running")  # DVC's executor states of an experiment not finished yet
_HEADLINE = re.compile(r"^(\w+)\.(mse|mse_ci95|n_seeds)$")


@dataclass(frozen=True)
class Experiment:
    name: str
    rev: str  # the experiment's commit (short)
    state: str | None  # DVC's executor state; None for an experiment pulled from a remote (finished)
    params: dict[str, Any]  # params.yaml as flat columns: 'latent_dim', 'data.protocol', ...
    mse: dict[str, dict]  # codec -> its MSE over seeds: mean, ci95_low, ci95_high, n

    @property
    def finished(self) -> bool:
        """Ran to the end, with metrics. While one runs DVC shows its temporary workspace,
        which holds the baseline's metrics: it is not finished."""
        return self.state in (None, "Success") and bool(self.mse)


READ_TIMEOUT = 180.0  # seconds one read may take before its process is killed and the read tried again


def show(repo: Path, tries: int = 5, pause: float = 2.0, timeout: float = READ_TIMEOUT) -> list[dict]:
    """``dvc.api.exp_show`` over every first-parent commit (a sweep's baseline is the commit it
    was queued from, which need not be HEAD any more).

    Each read runs in a child process, killed (by its PID) after ``timeout`` seconds: while DVC's
    queue writes an experiment's commits, pygit2 can fail to look up an object in its reader
    thread and then never signal the blob's end, so an in-process read would wait forever. A read
    that fails or hangs is tried again, ``tries`` times in all, ``pause`` seconds apart. The
    failures tried again include a queued experiment's temporary workspace appearing or going
    away under ``.dvc/tmp/exps`` as DVC reads it ("directory ... does not exist").
    """
    import time

    for attempt in range(1, tries + 1):
        try:
            return _read(repo, timeout)
        except _ReadFailed as exc:
            if attempt == tries:
                raise DataError(f"dvc exp show failed in {repo} ({tries} tries): {exc}") from None
            time.sleep(pause)
    raise AssertionError("not reached")


class _ReadFailed(Exception):
    """One read of the experiments failed or hung; its message says how."""


def _child_command(repo: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", __name__, str(repo)]


def _read(repo: Path, timeout: float) -> list[dict]:
    """One read, in a child process that prints the rows as JSON."""
    import json
    import subprocess

    try:
        out = subprocess.run(_child_command(repo), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _ReadFailed(f"no answer in {timeout:g} s (the read was killed)") from None
    if out.returncode != 0:
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        raise _ReadFailed(lines[-1] if lines else f"the read exited with {out.returncode}")
    try:
        return json.loads(out.stdout)
    except ValueError as exc:
        raise _ReadFailed(f"the read printed no JSON rows ({exc})") from None


def read_rows(repo: Path) -> list[dict]:
    """``dvc.api.exp_show`` in this process, every first-parent commit and its experiments."""
    import dvc.api

    return dvc.api.exp_show(str(repo), num=-1, force=True)


def _main(argv: list[str]) -> int:
    """The child of :func:`_read`: the rows of the repository ``argv[0]`` as JSON on stdout, or
    DVC's error as the last line on stderr (exit 1)."""
    import json
    import sys

    from dvc.exceptions import DvcException

    try:
        rows = read_rows(Path(argv[0]))
    except DvcException as exc:
        print(exc, file=sys.stderr)
        return 1
    json.dump(rows, sys.stdout, default=str)
    return 0


def _cell(value: Any) -> Any:
    """A cell's value; None where the experiment has none (the API gives such cells as None or
    as the text 'None', since every row has every experiment's columns)."""
    return None if value is None or value in ("None", "", "-") else value


def _column(key: str, file: str) -> str:
    """A column's name without the file prefix DVC adds when two files share a name."""
    return key[len(file) + 1 :] if key.startswith(file + ":") else key


def experiments(rows: list[dict]) -> list[Experiment]:
    """Every experiment row (baselines left out), in DVC's order."""
    from ..params import SCHEMA

    out = []
    for row in rows:
        if row.get("typ") not in ("branch_commit", "branch_base") or not row.get("Experiment"):
            continue
        headline: dict[str, dict] = {}
        params: dict[str, Any] = {}
        for key, value in row.items():
            value = _cell(value)
            match = _HEADLINE.match(_column(key, METRICS))
            if match and isinstance(value, (int, float)) and not isinstance(value, bool):
                headline.setdefault(match.group(1), {})[match.group(2)] = value
            elif _column(key, PARAMS) in SCHEMA:
                params[_column(key, PARAMS)] = value
        complete = {c: _summary(h) for c, h in headline.items() if set(_HEADLINE_KEYS) <= set(h)}
        out.append(Experiment(row["Experiment"], str(row.get("rev") or ""), _cell(row.get("State")), params, complete))
    return out


_HEADLINE_KEYS = ("mse", "mse_ci95", "n_seeds")


def _summary(headline: dict) -> dict:
    """A codec's headline columns as the MSE summary the sweep and the frontier read."""
    mean, half = float(headline["mse"]), float(headline["mse_ci95"])
    return {"mean": mean, "ci95_low": mean - half, "ci95_high": mean + half, "n": int(headline["n_seeds"])}


def latest_finished(rows: list[dict]) -> dict[str, Experiment]:
    """name -> the latest finished experiment of that name."""
    latest: dict[str, Experiment] = {}
    for exp in experiments(rows):
        if exp.finished:
            latest.setdefault(exp.name, exp)
    return latest


def pending(rows: list[dict]) -> list[str]:
    """The names of experiments queued or running."""
    return [e.name for e in experiments(rows) if e.state in PENDING]


def committed_file(repo: Path, rev: str, path: str) -> str:
    """A file as an experiment's commit holds it (``git show``): what ``dvc exp show`` leaves
    out, such as lists and whole tables."""
    import subprocess

    out = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise DataError(f"cannot read {path} of experiment commit {rev}: {out.stderr.strip()}")
    return out.stdout


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
