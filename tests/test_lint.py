"""`make lint` fails on what it is there to catch: the checks run on a copy of one module of
src/ with a fault added, under the repository's own settings (pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent
MODULE = "src/mnist_codec/timing.py"


def faulty_copy(tmp_path: Path, fault: str) -> Path:
    """The repository's settings and one module of src/ with ``fault`` appended, in ``tmp_path``."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / MODULE
    path.parent.mkdir(parents=True)
    path.write_text((REPO / MODULE).read_text() + fault)
    return path


def lint(tmp_path: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_the_module_is_clean_as_committed(tmp_path):
    faulty_copy(tmp_path, "")
    for cmd in (["ruff", "check", MODULE], ["ruff", "format", "--check", MODULE]):
        proc = lint(tmp_path, str(BIN / cmd[0]), *cmd[1:])
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_unused_import_fails_ruff(tmp_path):
    faulty_copy(tmp_path, "\nimport shutil\n")
    proc = lint(tmp_path, str(BIN / "ruff"), "check", "--no-fix", MODULE)
    assert proc.returncode == 1
    assert "F401" in proc.stdout and "`shutil` imported but unused" in proc.stdout


def test_unformatted_code_fails_ruff_format(tmp_path):
    faulty_copy(tmp_path, "\n\ndef spaced( x:int )->int :\n    return x\n")
    proc = lint(tmp_path, str(BIN / "ruff"), "format", "--check", MODULE)
    assert proc.returncode == 1 and "1 file would be reformatted" in proc.stdout


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ('\n\ndef stage_label(name: str) -> int:\n    return f"stage {name}"\n', "return-value"),
        ("\n\ndef stage_label(name):\n    return name\n", "no-untyped-def"),
    ],
    ids=["wrong-return-type", "untyped-def"],
)
def test_a_type_error_fails_mypy(tmp_path, fault, code):
    path = faulty_copy(tmp_path, fault)
    proc = lint(
        tmp_path,
        str(BIN / "mypy"),
        "--config-file",
        "pyproject.toml",
        "--follow-imports",
        "silent",
        "--cache-dir",
        str(tmp_path / "cache"),
        str(path.relative_to(tmp_path)),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"[{code}]" in proc.stdout and "timing.py" in proc.stdout


def test_a_broken_github_workflow_fails_its_schema(tmp_path):
    """The workflow users copy is checked as make lint checks it: against GitHub's workflow schema,
    bundled with check-jsonschema (no network)."""
    workflow = (REPO / ".github/workflows/ci.yml").read_text()
    cmd = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text(workflow)
    bad.write_text(workflow.replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    assert lint(tmp_path, *cmd, str(good)).returncode == 0
    proc = lint(tmp_path, *cmd, str(bad))
    assert proc.returncode == 1 and "runs_on" in proc.stdout + proc.stderr
    assert "fetch-depth: 0" in workflow and "GATE_BASE: ${{ github.event.pull_request.base.sha }}" in workflow
