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
  covers is an error naming the file and the line (the config layer's one line,
  :mod:`mnist_codec.config`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from .. import config, fileio
from ..errors import GateError
from .digest import DIGEST_CHARS
from .gate import Rule, rule_for

FILENAME = "metrics_accepted.yaml"
# what each field accepts, in the words of its refusal
DIGEST = f"a results digest ({DIGEST_CHARS} hex digits, 0-9 a-f)"
DATE = "a date, YYYY-MM-DD"
REASON = "a text that says why the regression is accepted (not empty)"
METRIC = "a metric a rule of metrics_gate.yaml covers, as codec.metric"

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


def _date(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value  # YAML reads 2026-12-07 as a date


def _iso_date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(DATE) from None
    return value


def _reason(value: str) -> str:
    if not value.strip():
        raise ValueError(REASON)
    return value.strip()


Digest = Annotated[str, Field(pattern=rf"^[0-9a-f]{{{DIGEST_CHARS}}}$", json_schema_extra={"accepts": DIGEST})]


class RegressionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    metric: Annotated[str, Field(json_schema_extra={"accepts": METRIC})]
    base: Digest
    change: str

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str, info: ValidationInfo) -> str:
        rules = (info.context or {}).get("rules")
        if rules is not None and ("." not in metric or rule_for(metric, rules) is None):
            raise ValueError(METRIC)
        return metric


class AcceptanceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    results: Digest
    date: Annotated[str, BeforeValidator(_date), AfterValidator(_iso_date), Field(json_schema_extra={"accepts": DATE})]
    reason: Annotated[
        str,
        BeforeValidator(lambda v: "" if v is None else v),
        AfterValidator(_reason),
        Field(json_schema_extra={"accepts": REASON}),
    ]
    regressions: list[RegressionEntry]


class AcceptedFile(BaseModel):
    """metrics_accepted.yaml as written: ``accepted``, a list of acceptances (empty or none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accepted: list[AcceptanceEntry] | None = None


def load(path: str | Path, rules: list[Rule]) -> Accepted:
    """The file's acceptances, checked (each metric against ``rules``); a missing file accepts
    nothing. A problem raises :class:`GateError` in the config layer's one line."""
    path = Path(path)
    if not path.exists():
        return Accepted(path)
    doc = config.read_yaml(path, error=GateError)
    file = config.check(AcceptedFile, doc, error=GateError, context={"rules": rules})
    return Accepted(
        path,
        tuple(
            Acceptance(
                entry.results,
                entry.date,
                entry.reason,
                tuple(
                    Regression(reg.metric, reg.base, reg.change, doc.lines["accepted", i, "regressions", j])
                    for j, reg in enumerate(entry.regressions)
                ),
                doc.lines["accepted", i],
            )
            for i, entry in enumerate(file.accepted or ())
        ),
    )


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
