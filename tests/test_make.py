"""The Makefile a newcomer types into: distinct names and ports, one override syntax, the two
test targets, and a benchmark baseline of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO


def make_n(*args: str) -> str:
    """What make would run (-n), in this environment (already installed: no reinstall)."""
    stamps = [
        f"STAMP={REPO}/Makefile",
        f"TEAM_STAMP={REPO}/Makefile",
        f"DEV_STAMP={REPO}/Makefile",
        f"DOCS_STAMP={REPO}/Makefile",
        f"SERVE_STAMP={REPO}/Makefile",
        f"BENCH_STAMP={REPO}/Makefile",
    ]
    proc = subprocess.run(["make", "-n", *stamps, *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_four_servers_have_distinct_names_and_ports():
    ports = {}
    for target in ("ui", "tracking-server", "serve-model", "serve-ray"):
        out = make_n(target)
        ports[target] = int(re.search(r"--port (\d+)", out).group(1))
    assert ports == {"ui": 5000, "tracking-server": 5050, "serve-model": 5001, "serve-ray": 5002}
    assert 8000 not in ports.values()  # the docs server's (make docs-serve)
    targets = re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.M)
    assert "serve" not in targets and "server" not in targets  # one letter apart, gone
    assert "mnist-codec serve " in make_n("serve-model") and "mnist-codec ui " in make_n("ui")
    listed = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert all(
        f"make {t}" in listed for t in ("repro", "ui", "test", "docs", "tracking-server", "serve-model", "serve-ray")
    )


def test_serve_ray_deploys_on_a_cluster_when_one_is_named_and_bench_takes_only():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    local = subprocess.run(
        ["make", "-n", f"SERVE_STAMP={REPO}/Makefile", "serve-ray"], cwd=REPO, capture_output=True, text=True, env=env
    ).stdout
    assert "mnist-codec serve --ray" in local and '--config "serve.yaml"' in local and "--cluster" not in local
    on = make_n("serve-ray", "CLUSTER=127.0.0.1:6379")
    assert "--cluster 127.0.0.1:6379" in on
    assert "--only serve" in make_n("bench", "ONLY=serve") and "--only" not in make_n("bench")


def test_test_runs_the_fast_set_and_test_full_everything():
    fast, full = make_n("test"), make_n("test-full")
    assert '-m "not full"' in fast and "--durations" in full and "-m" not in full.split("pytest", 1)[1]
    assert "--durations" in (REPO / ".ci/run").read_text() or "test-full" in (REPO / ".ci/run").read_text()
    assert "make test-full" in (REPO / ".ci/run").read_text()


def test_sweep_and_frontier_take_overrides_as_dvc_does():
    sweep = make_n("sweep", "SWEEP_SIZES=8", "SWEEP_ARGS=-S n_seeds=1")
    assert "dvc exp run --queue -n rd-$k -S latent_dim=$k -S n_seeds=1" in sweep
    assert "mnist-codec frontier -S n_seeds=1" in make_n("frontier", "FRONTIER_ARGS=-S n_seeds=1")
    assert "mnist-codec protocol-table notebook -S n_seeds=1" in make_n("notebook-table", "PROTOCOL_ARGS=-S n_seeds=1")


@pytest.mark.parametrize("command", ["frontier", "protocol-table notebook"])
def test_an_override_not_of_the_form_key_value_is_refused_by_name(command, capsys):
    from mnist_codec import cli

    assert cli.main([*command.split(), "-S", "train.epochs"]) == 2
    assert "-S 'train.epochs' is not KEY=VALUE" in capsys.readouterr().err


def test_an_unknown_protocol_is_refused_before_anything_runs(capsys, tmp_path, monkeypatch):
    from mnist_codec import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["protocol-table", "kfold"]) == 2
    assert "unknown protocol 'kfold'" in capsys.readouterr().err


def test_the_benchmarks_notebook_baseline_runs_from_the_repository_alone(tmp_path):
    """`make bench` needs nothing outside the repository: its notebook script reads the bundled
    MNIST. A shrunken run (500 images, 1 epoch) gives every model's MSE and the step times."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/notebook_baseline.py"),
            "--limit",
            "500",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(result["mse"]) == ["ae", "deep_LeakyReLU", "deep_ReLU", "deep_Tanh", "pca32"]
    assert all(0 < v < 1 for v in result["mse"].values())  # pixels in [0, 1]: an MSE below 1
    assert {"fetch", "pca", "train_ae", "train_deep"} <= set(result["seconds"])
    assert (tmp_path / "pca_2d.png").read_bytes()[:4] == b"\x89PNG"
    default = re.search(r'"--notebook".*?default=([^,]+)', (REPO / "benchmarks/bench/run.py").read_text(), re.S)
    assert "shared" not in default.group(1) and "benchmarks/notebook_baseline.py" in default.group(1)


def test_test_full_runs_on_workers_with_coverage_and_ci_runs_lint_tests_and_the_pipeline():
    full = make_n("test-full").split("pytest", 1)[1]
    assert "-n 2" in full and "--dist loadfile" in full and "--no-loadscope-reorder" in full
    assert "--cov " in full and "--cov-report=term" in full
    report = (REPO / "pyproject.toml").read_text().split("[tool.coverage.report]", 1)[1].split("\n[", 1)[0]
    assert 0 < float(re.search(r"^fail_under = ([\d.]+)$", report, re.M).group(1)) <= 100  # pytest-cov fails below it
    import shlex

    ci = (REPO / ".ci/run").read_text().splitlines()
    steps = [shlex.split(line.split("||")[0]) for line in ci if line.startswith("step ")]
    made = [words[3] for words in steps if words[2] == "make"]  # step NAME make TARGET ...
    assert made == ["install-dev", "lint", "test-full", "mutation", "docs", "repro", "gate"]  # in this order
    assert "python tests/mutation.py --rescore" in make_n("mutation", "MUTATION_ARGS=--rescore")


def test_make_gate_asks_what_ci_asks():
    """CI runs `make gate` (its report to .ci/comparison.md), and a person runs the same target."""
    assert "mnist-codec gate" in make_n("gate") and "--only regress" in make_n("gate", "GATE_ARGS=--only regress")
    ci = (REPO / ".ci/run").read_text()
    assert 'make gate GATE_ARGS="--report .ci/comparison.md"' in ci and "--baseline" not in ci


def test_the_heaviest_test_files_come_first(request):
    """What `--dist loadfile --no-loadscope-reorder` hands to the workers, in order: the files
    of tests/conftest.py's HEAVY_FIRST, then the rest in the collection's order."""
    from conftest import HEAVY_FIRST, heaviness_rank

    ranks = [heaviness_rank(i) for i in request.session.items]
    assert ranks == sorted(ranks)
    assert all((REPO / f).is_file() for f in HEAVY_FIRST)  # no stale name
