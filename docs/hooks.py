"""MkDocs hooks for the mnist-codec docs site.

* The figures in ``reports/`` join the site as they are (``reports/...png``), so pages show
  what the pipeline drew, not copies kept beside the docs.
* ``<!-- params-reference -->`` becomes the table of every params key, generated from the
  pydantic schema in ``mnist_codec.params`` (it cannot drift from what the stages accept).
* ``<!-- frontier-record -->`` becomes the account of ``reports/frontier.json``, worded by
  ``mnist_codec.experiments.frontier.markdown`` (the record ``make tune`` or ``make frontier`` wrote).
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("reports/*.png", "reports/figures/*.png")


def on_files(files, config):
    for pattern in FIGURES:
        for path in sorted(ROOT.glob(pattern)):
            uri = path.relative_to(ROOT).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def _cell(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, type(None))) else str(value)
    return text.replace("|", "\\|")


def params_reference() -> str:
    from mnist_codec import params

    rows = ["| key | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    for r in params.reference():
        rows.append(f"| `{r['key']}` | `{_cell(r['default'])}` | {_cell(r['accepts'])} | {_cell(r['meaning'])} |")
    return "\n".join(rows)


def frontier_record() -> str:
    from mnist_codec.experiments import frontier

    return frontier.markdown(json.loads((ROOT / "reports/frontier.json").read_text()))


MARKERS = {"<!-- params-reference -->": params_reference, "<!-- frontier-record -->": frontier_record}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
