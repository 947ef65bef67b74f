"""The gate guards main, on real runs: a regression committed with its reports/ and dvc.lock fails.

DVC's loop is `dvc repro`, then commit the code with dvc.lock and reports/. A copy of the
project on the tiny profile does exactly that with a code change that trains worse (the
optimizer's rate halved in codecs/schedules.py, as a careless edit would), and asks the gate
with `make gate`, as CI asks it: it fails, naming the codec, the base and the change; after
`mnist-codec accept --reason ...` and a commit it passes and its report shows the reason; a
README-only commit still passes; a second regression fails, since the first acceptance names
other results. The verdict lands on the evaluate run of HEAD in the copy's MLflow store.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import TINY, project_copy, sh

pytestmark = pytest.mark.full

CLI = str(Path(sys.executable).parent / "mnist-codec")
SCHEDULES = "src/mnist_codec/codecs/schedules.py"
RATE = "    rate = torch.tensor(lr,"


def regress(repo: Path, factor: float, message: str) -> str:
    """Scale the optimizer's rate in the code, `dvc repro`, commit code, dvc.lock and reports/."""
    path = repo / SCHEDULES
    path.write_text(path.read_text().replace(RATE, f"    lr = lr * {factor}  # a careless edit\n{RATE}", 1))
    sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", message)
    return sh(repo, "git", "rev-parse", "--short=7", "HEAD").stdout.strip()


def gate(repo: Path) -> tuple[int, str]:
    """`make gate` as CI runs it, in this environment (a stamp newer than the copy's lock: no install)."""
    stamp = repo.parent / "installed"
    stamp.touch()
    args = ["make", "gate", f"VENV={sys.prefix}", f"STAMP={stamp}", "GATE_ARGS=--report report.md"]
    proc = sh(repo, *args, check=False)
    assert "uv pip install" not in proc.stdout, proc.stdout  # nothing was installed into this environment
    return proc.returncode, proc.stdout + proc.stderr


def mse_row(out: str, codec: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.startswith(codec + " "))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The tiny profile's results as the project's first commit, accepted as the starting point."""
    root = project_copy(tmp_path_factory.mktemp("guard") / "repo", TINY)
    (root / "metrics_accepted.yaml").unlink()  # main's acceptances name main's results
    sh(root, "dvc", "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "--amend", "-m", "the tiny profile")
    sh(root, CLI, "accept", "--reason", "the tiny profile's results: the starting point")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "accepted results")
    return root


def test_a_committed_regression_fails_until_accepted_and_a_second_one_fails_again(repo):
    base = sh(repo, "git", "rev-parse", "--short=7", "HEAD").stdout.strip()
    branch = sh(repo, "git", "symbolic-ref", "--short", "HEAD").stdout.strip()
    sh(repo, "dvc", "repro", "--force", "-s", "evaluate")  # as CI does: a run of HEAD, then the gate
    code, out = gate(repo)
    assert code == 0, out  # the starting point: reproduced, nothing to regress against yet
    assert "verdict logged on the evaluate run" in out and f"(evaluate ({branch}@{base})," in out  # HEAD's run

    head = regress(repo, 0.5, "a smaller rate, committed with its reports/ and dvc.lock")
    code, out = gate(repo)
    assert code == 2, out  # make's own exit code when its command failed
    assert f"against base {base}" in out and f"HEAD {head}" in out
    failed = {codec: mse_row(out, codec) for codec in ("ae", "deep_relu") if "FAIL" in " ".join(mse_row(out, codec))}
    assert failed, out
    for codec, cells in failed.items():
        assert float(cells[4].rstrip("%")) >= 3.0 and cells[-1].startswith("regress"), (codec, out)
    assert "**Gate: FAILED" in (repo / "report.md").read_text()
    # the run that made the committed results ran before the commit: found by their digest
    assert "verdict logged on the evaluate run" in out and f"evaluate ({branch}@{base}-dirty)" in out, out

    proc = sh(repo, CLI, "accept", "--reason", "a smaller rate: steadier on the full data")
    assert "recorded" in proc.stdout
    sh(repo, "git", "commit", "-qam", "accept the smaller rate")
    code, out = gate(repo)
    assert code == 0, out
    assert all(mse_row(out, c)[-1] == "accepted" for c in failed), out
    assert "steadier on the full data" in (repo / "report.md").read_text()

    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nA note.\n")
    sh(repo, "git", "commit", "-qam", "README only")
    assert gate(repo)[0] == 0

    regress(repo, 0.5, "the rate halved again")
    code, out = gate(repo)
    assert code == 2 and "FAIL: regress" in out, out
