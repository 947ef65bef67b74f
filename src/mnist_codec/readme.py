"""``mnist-codec readme`` (run by ``make repro``): the README's headline table, written from
``reports/comparison.md`` between two markers, so the README shows what the last run wrote
and never a copy kept by hand. The docs site includes the reports directly."""

from __future__ import annotations

from pathlib import Path

from .errors import DataError

START, END = (
    "<!-- comparison: written by `mnist-codec readme` from reports/comparison.md -->",
    "<!-- end of comparison -->",
)


def headline(comparison_md: str) -> str:
    """The comparison table and its notes, without the report's own title."""
    lines = comparison_md.strip().splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip()


def update(readme: Path, comparison: Path) -> bool:
    """Write the headline into ``readme``; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise DataError(f"{readme}: the markers {START!r} and {END!r} are missing")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    new = f"{before}{START}\n{headline(comparison.read_text(encoding='utf-8'))}\n{END}{after}"
    if new == text:
        return False
    from .fileio import write_text

    write_text(readme, new)
    return True
