"""Accepted regressions: the committed file that says which worse results a person let through, and why.

``mnist-codec accept --reason TEXT`` appends one acceptance to ``metrics_accepted.yaml`` at the
repository root: the accepted results (by digest), the date, the reason, and each regression the
gate saw in them: the metric, the results it was compared with (by digest) and the change.

* An entry accepts a failed check only for that metric, from exactly those results to exactly
  these: a later change of the results, or another base (a rebase onto a newer main), needs a
  reason of its own. An entry that shares one of the two digests with a failed check but not
  the other is *stale*: the gate names it and lets nothing through on it.
* The last acceptance's results are the **accepted results**: the gate also holds HEAD's
  results against them, so small steps, each within its tolerance of the one before, cannot
  add up (drift).
* A malformed file, an entry without a reason, or one naming a metric no rule of the gate
  covers is an error naming the file and the line.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import fileio
from ..errors import GateError
from .digest import DIGEST_CHARS
from .gate import Rule, rule_for

FILENAME = "metrics_accepted.yaml"
ACCEPTANCE_KEYS = ("results", "date", "reason", "regressions")
REGRESSION_KEYS = ("metric", "base", "change")
_DIGEST = re.compile(rf"^[0-9a-f]{{{DIGEST_CHARS}}}$")

HEADER = f"""\
# Regressions of the committed results that a person accepted, each with its reason.
# `mnist-codec accept --reason "..."` appends an acceptance; review it as you review code.
#
# The gate (`make gate`) passes a regression of reports/metrics_detail.json only where an
# acceptance below names those results (`results`) and, among its regressions, that metric and
# the results it was compared with (`base`), both by digest (the SHA-256 of the file's canonical
# JSON, its first {DIGEST_CHARS} hex digits). The last acceptance's results are the accepted results:
# HEAD's results are held against them too, so that small steps cannot add up (docs/gate.md).
"""


@dataclass(frozen=True)
class Regression:
    metric: str
    base: str  # digest of the results the metric was compared with
    change: str  # as the gate showed it, e.g. '+10.60%'
    line: int = 0  # where it starts in the file, 1-based; 0: not read from one


@dataclass(frozen=True)
class Acceptance:
    results: str  # digest of the accepted results
    date: str
    reason: str
    regressions: tuple[Regression, ...]
    line: int = 0  # where it starts in the file, 1-based; 0: not read from one


@dataclass(frozen=True)
class Accepted:
    """The acceptances of the file, oldest first; an empty file or none accepts nothing."""

    path: Path
    acceptances: tuple[Acceptance, ...] = ()

    @property
    def latest(self) -> Acceptance | None:
        return self.acceptances[-1] if self.acceptances else None

    def covering(self, metric: str, base: str, results: str) -> tuple[Acceptance, Regression] | None:
        """The acceptance that lets ``metric`` go from ``base`` to ``results``, if one does."""
        for acc in reversed(self.acceptances):
            if acc.results != results:
                continue
            for reg in acc.regressions:
                if reg.metric == metric and reg.base == base:
                    return acc, reg
        return None

    def stale(self, metric: str, base: str, results: str) -> list[tuple[Acceptance, Regression]]:
        """Entries for ``metric`` that share one digest with this comparison but not the other."""
        return [
            (acc, reg)
            for acc in self.acceptances
            for reg in acc.regressions
            if reg.metric == metric and (reg.base == base) != (acc.results == results)
        ]


def _fail(path: Path, node: yaml.Node, what: str) -> GateError:
    return GateError(f"{path}:{node.start_mark.line + 1}: {what}")


def _mapping(path: Path, node: yaml.Node, keys: tuple[str, ...], what: str) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise _fail(path, node, f"{what} must be a mapping of {', '.join(keys)}")
    out: dict[str, yaml.Node] = {}
    for key_node, value in node.value:
        key = key_node.value
        if key not in keys:
            raise _fail(path, key_node, f"{what} has an unknown key '{key}'; allowed: {', '.join(keys)}")
        out[key] = value
    missing = [k for k in keys if k not in out]
    if missing:
        raise _fail(path, node, f"{what} lacks {', '.join(missing)}")
    return out


def _scalar(path: Path, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _fail(path, node, f"{what} must be a single value")
    return str(node.value).strip()


def _digest(path: Path, node: yaml.Node, what: str) -> str:
    value = _scalar(path, node, what)
    if not _DIGEST.match(value):
        raise _fail(path, node, f"{what} '{value}' is not a results digest ({DIGEST_CHARS} hex digits)")
    return value


def load(path: str | Path, rules: list[Rule]) -> Accepted:
    """The file's acceptances, checked; a missing file accepts nothing."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Accepted(path)
    except OSError as exc:
        raise GateError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise GateError(f"{path}: not valid YAML: {exc}") from None
    if root is None:
        return Accepted(path)
    top = _mapping(path, root, ("accepted",), "the file")
    items = top["accepted"]
    if isinstance(items, yaml.ScalarNode) and items.value in ("", "~", "null"):
        return Accepted(path)
    if not isinstance(items, yaml.SequenceNode):
        raise _fail(path, items, "'accepted' must be a list of acceptances")
    return Accepted(path, tuple(_acceptance(path, node, rules) for node in items.value))


def _acceptance(path: Path, node: yaml.Node, rules: list[Rule]) -> Acceptance:
    fields = _mapping(path, node, ACCEPTANCE_KEYS, "an acceptance")
    reason = _scalar(path, fields["reason"], "reason")
    if not reason or reason in ("~", "null"):
        raise _fail(path, fields["reason"], "the reason is empty: say why this regression is accepted")
    date = _scalar(path, fields["date"], "date")
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise _fail(path, fields["date"], f"date '{date}' is not YYYY-MM-DD") from None
    regs = fields["regressions"]
    if not isinstance(regs, yaml.SequenceNode):
        raise _fail(path, regs, "'regressions' must be a list (empty where none)")
    regressions = tuple(_regression(path, reg, rules) for reg in regs.value)
    results = _digest(path, fields["results"], "results")
    return Acceptance(results, date, reason, regressions, node.start_mark.line + 1)


def _regression(path: Path, node: yaml.Node, rules: list[Rule]) -> Regression:
    fields = _mapping(path, node, REGRESSION_KEYS, "a regression")
    metric = _scalar(path, fields["metric"], "metric")
    if "." not in metric or rule_for(metric, rules) is None:
        raise _fail(path, fields["metric"], f"'{metric}' is no metric the gate knows (metrics_gate.yaml)")
    base = _digest(path, fields["base"], "base")
    return Regression(metric, base, _scalar(path, fields["change"], "change"), node.start_mark.line + 1)


def _header(path: Path) -> str:
    """The existing file's leading comment block, else the standard one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return HEADER
    kept = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            kept.append(line)
        else:
            break
    return "".join(kept) or HEADER


def render(path: Path, acceptances: list[dict[str, Any]]) -> str:
    body = yaml.safe_dump({"accepted": acceptances}, sort_keys=False, allow_unicode=True, width=100)
    return _header(path) + body


def as_dict(acc: Acceptance) -> dict[str, Any]:
    return {
        "results": acc.results,
        "date": acc.date,
        "reason": acc.reason,
        "regressions": [{"metric": r.metric, "base": r.base, "change": r.change} for r in acc.regressions],
    }


def append(accepted: Accepted, new: Acceptance) -> None:
    """Write the file with ``new`` after its acceptances, atomically (the old file or the new)."""
    entries = [as_dict(a) for a in (*accepted.acceptances, new)]
    fileio.write_text(accepted.path, render(accepted.path, entries))
