"""The name of a set of results: the SHA-256 of the detail file's canonical JSON, shortened.

The evaluate stage tags its MLflow run with the name of the results it wrote, and the gate
names the results it compares, accepts and holds drift against the same way, so the run that
made HEAD's committed results can be found again, and an acceptance survives a rebase or a
squash merge (the content, not the commit, is named).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

DIGEST_CHARS = 16  # of the SHA-256's 64: what an acceptance records and the report shows


def digest(results: dict[str, Any]) -> str:
    """The results' name: the SHA-256 of their canonical JSON (keys sorted, no spaces), shortened."""
    text = json.dumps(results, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]
