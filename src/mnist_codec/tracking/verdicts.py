"""The gate's verdict on the evaluate run that made the results it judged, in the tracking store.

``make gate`` (with a store: ``$MLFLOW_TRACKING_URI``, or the checkout's ``mlflow.db`` that
``make repro`` wrote) tags that workspace evaluate run with each question's outcome and the
base, and logs the report beside its comparison table, so the runs table can be searched for
``tags.mnist_codec.gate = 'failed'``. The gate's exit code never depends on the store: a store
that cannot be reached is one line, not a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .store import EXPERIMENT, tracking_uri

PREFIX = "mnist_codec.gate"  # the tags' prefix: mnist_codec.gate, mnist_codec.gate.regress, ...


def log_verdict(root: Path, sha: str, results: str, tags: dict[str, str], report: str) -> str:
    """Tag the workspace evaluate run that the gate judged with ``tags`` and log ``report`` as
    gate.md; the line that says where, or why not. The run: the latest of commit ``sha`` (a run
    of HEAD, as CI makes one before it asks the gate), else the latest that wrote the results
    named ``results`` (DVC's loop: `dvc repro`, then commit what it wrote)."""
    import os

    uri = tracking_uri(root)
    if "MLFLOW_TRACKING_URI" not in os.environ and not (root / "mlflow.db").exists():
        return "gate: no tracking store here (mlflow.db): the verdict is not logged"
    try:
        import mlflow

        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        workspace = "tags.`mnist_codec.stage` = 'evaluate' and tags.`mnist_codec.dvc_exp` = 'workspace'"
        runs: list[Any] = []
        for which in (f"tags.`mnist_codec.git_commit` = '{sha}'", f"tags.`mnist_codec.results` = '{results}'"):
            if exp is None or runs:
                break
            runs = client.search_runs(
                [exp.experiment_id],
                filter_string=f"{workspace} and {which}",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
        if not runs:
            return f"gate: no evaluate run of {sha[:7]} or of its results in {uri}: the verdict is not logged"
        run_id = runs[0].info.run_id
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.log_text(run_id, report, "gate.md")
    except Exception as exc:  # the store's failure is not the gate's: say it and go on
        return f"gate: the verdict could not be logged to {uri}: {type(exc).__name__}: {str(exc)[:200]}"
    return f"gate: verdict logged on the evaluate run {run_id} ({runs[0].info.run_name}, {uri})"
