"""Comparing runs as a person does: after `dvc repro` and two experiments, in a real terminal
of 120 columns (tmux), `make compare` shows every experiment's MSE for every codec, and the
params each one changed, with nothing cut to `…`; `dvc metrics diff` fits in 30 lines;
`dvc plots diff` draws both revisions' loss curves.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, project_copy, project_env, sh
from services import wait_for

pytestmark = pytest.mark.full

CODECS = ["pca", "ae", "deep_relu", "deep_tanh", "deep_leaky_relu"]  # the widest headers there are
COLUMNS = 120
ACTIVATIONS = ["relu", "tanh", "leaky_relu"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = project_copy(tmp_path_factory.mktemp("compare") / "repo", {**TINY, "activation": ACTIVATIONS})
    root = root.rename(root.parent / "r")  # a short path: the prompt takes no room from the table
    sh(root, "dvc", "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    sh(root, "dvc", "exp", "run", "-n", "tanh", "-S", "activation=tanh")
    sh(root, "git", "checkout", "HEAD", "--", "params.yaml")  # the next one starts from the baseline's params
    sh(root, "dvc", "exp", "run", "-n", "epochs-1", "-S", "train.epochs=1")
    return root


class Terminal:
    """A tmux server of its own (its own socket) with one 120-column window; stopped by its PID."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.socket, self.env = f"mnist-codec-test-{os.getpid()}", env  # the server's environment: the shell's
        size = ("-x", str(COLUMNS), "-y", "200")  # a shell without profiles: they would reset PATH
        self._tmux("new-session", "-d", "-s", "t", *size, "-c", str(cwd), "bash --noprofile --norc")
        self.pid = int(self._tmux("display-message", "-p", "#{pid}").stdout.strip())

    def _tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        )

    def run(self, command: str, timeout: float = 300) -> list[str]:
        """Type ``command`` at the prompt; the screen's lines once it has finished."""
        self._tmux("send-keys", "-t", "t", "clear; " + command + "; echo END-OF-$((6*7))", "Enter")

        def finished() -> tuple[list[str]] | None:  # a tuple: true even where no line came before the end
            screen = self._tmux("capture-pane", "-t", "t", "-p").stdout.splitlines()
            ends = [i for i, line in enumerate(screen) if line.strip() == "END-OF-42"]
            return (screen[: max(ends)],) if ends else None

        return wait_for(finished, timeout, f"{command!r} finishing", every=0.5)[0]

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGTERM)


@pytest.fixture
def terminal(repo):
    term = Terminal(repo, project_env(repo))
    yield term
    term.stop()


def test_make_compare_shows_every_codecs_mse_and_what_changed_in_120_columns(repo, terminal, tmp_path):
    stamp = tmp_path / "installed"  # this environment is installed: make must not reinstall into it
    stamp.touch()
    screen = terminal.run(f"make compare VENV={sys.prefix} STAMP={stamp}")
    text = "\n".join(screen)
    assert "…" not in text, text  # no column cut or collapsed
    assert all(len(line) <= COLUMNS for line in screen)
    tables = [line for line in screen if line.split()[:1] == ["Experiment"]]  # the headers, not make's echo
    header = next(line for line in tables if ".mse" in line)
    assert re.findall(r"\b(\w+)\.mse\b", header) and set(re.findall(r"\b(\w+)\.mse\b", header)) == set(CODECS), text
    rows = {name: next(line for line in screen if f"[{name}]" in line) for name in ("tanh", "epochs-1")}
    number = r"\d\.\d+"
    trained = {"tanh": 3, "epochs-1": len(CODECS)}  # PCA, the AE and the deep codecs each one has
    for name, line in rows.items():
        assert len(re.findall(number, line)) == trained[name], (name, line)
    top = next(i for i, line in enumerate(screen) if line.split()[:1] == ["workspace"])
    baseline = screen[top + 1]  # the commit the experiments came from
    assert len(re.findall(number, baseline)) == len(CODECS), baseline
    params = next(line for line in tables if "activation" in line)
    assert "train.epochs" in params  # the second table: the params each experiment changed


def test_dvc_metrics_diff_of_an_experiment_fits_30_lines(repo, terminal):
    screen = [line for line in terminal.run("dvc metrics diff HEAD epochs-1") if line.strip()]
    assert 5 <= len(screen) <= 30, screen
    assert all(len(line) <= COLUMNS for line in screen)
    changed = {line.split()[1] for line in screen[1:]}
    assert {"ae.mse", "deep_tanh.mse", "deep_relu.mse", "deep_leaky_relu.mse"} <= changed, screen


def test_dvc_plots_diff_draws_both_revisions_curves(repo):
    data = json.loads(sh(repo, "dvc", "plots", "diff", "HEAD", "epochs-1", "--json").stdout)["data"]
    for curve in ("reports/curves/ae/seed0.csv", "reports/curves/deep/deep_tanh/seed1.csv"):
        (plot,) = data[curve]
        assert plot["revisions"] == ["HEAD", "epochs-1"]
        drawn = {(v["rev"], v["field"]) for v in plot["content"]["data"]["values"]}
        assert drawn == {(rev, y) for rev in ("HEAD", "epochs-1") for y in ("train_loss", "eval_loss")}


def test_the_gate_judges_an_experiment_against_main_in_120_columns(repo, terminal):
    """`mnist-codec gate --base HEAD --current tanh`: a real DVC experiment's committed results
    against main's, read in the 120-column terminal. The experiment trained only Tanh's deep AE,
    so the codecs it dropped fail (missing) and the rest pass, one whole row each."""
    gate = Path(sys.executable).parent / "mnist-codec"
    none = repo.parent / "no-acceptances.yaml"  # main's acceptances name main's results, not this profile's
    none.write_text("accepted: []\n")
    command = f"{gate} gate --base HEAD --current tanh --accepted {none}"
    screen = terminal.run(f"{command}; echo exit=$?")
    text = "\n".join(screen)
    rows = {line.split()[0]: line for line in screen if line.split()[:1] and line.split()[0] in CODECS}
    assert set(rows) == set(CODECS) and "exit=1" in text, text
    assert rows["deep_relu"].endswith("FAIL: regress") and rows["deep_leaky_relu"].endswith("FAIL: regress"), text
    assert rows["deep_tanh"].rstrip().endswith("pass") and rows["ae"].rstrip().endswith("pass"), text
    assert "reproduce" not in text and "regress: tanh " in text  # committed results only: no fresh run
    assert "missing (regress): deep_relu and its" in text and "drift: SKIPPED" in text
    out = subprocess.run(command.split(), cwd=repo, env=project_env(repo), capture_output=True, text=True).stdout
    assert max(len(line) for line in out.splitlines()) <= COLUMNS and out.splitlines()[0] in screen  # nothing wrapped
