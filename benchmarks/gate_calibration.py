"""Calibrate and prove the metrics gate on real runs (docs/gate.md).

The training stages and the evaluate stage run again, on the data and PCA fit of a finished
`make repro` in this checkout, under each condition below; each run's detail file is then
compared with the baseline's seed by seed, and `mnist-codec gate` gives its verdict.

* Perturbations, the same code on other float paths, which the gate must pass: MKL's
  bitwise-compatible kernels (``MKL_CBWR=COMPATIBLE``), one thread instead of one a core,
  PyTorch's kernels without AVX2 (``ATEN_CPU_CAPABILITY=default``, as on an older CPU), and
  the stages pinned to one core (``taskset -c 0``).
* Regressions, code changes that make the autoencoders worse, which it must fail when one of
  them is 3% worse or more: one epoch fewer than params.yaml says, a lower learning rate (half,
  and 80%), and a wrong initialisation (weights drawn three times too wide). Each is injected into the
  stage's process, so the runs keep the baseline's seeds and settings, as a code change would.

    python benchmarks/gate_calibration.py            # every condition: ~35 min on 2 cores
    python benchmarks/gate_calibration.py --only mkl-cbwr epochs-1

It writes benchmarks/gate_calibration.json (every seed's paired change) and
benchmarks/GATE.md (the tables docs/gate.md includes). The baseline is this checkout's
reports/metrics_detail.json, as `make repro` left it; the runs go to a temporary folder in
models/ and a temporary MLflow store, so neither the workspace's outputs nor mlflow.db change.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import runpy
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from gate_calibration_report import CODECS, markdown

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass(frozen=True)
class Condition:
    name: str
    kind: str  # perturbation (must pass) | regression (must fail where 3% or more)
    what: str
    env: dict[str, str] = field(default_factory=dict)
    prefix: tuple[str, ...] = ()  # a command the stages run under (taskset)
    inject: str | None = None  # a regression patched into the stage's process (see _inject)


CONDITIONS = [
    Condition("mkl-cbwr", "perturbation", "MKL's bitwise-compatible kernels", {"MKL_CBWR": "COMPATIBLE"}),
    Condition("one-thread", "perturbation", "one torch thread instead of one a core", {"OMP_NUM_THREADS": "1"}),
    Condition(
        "aten-default",
        "perturbation",
        "PyTorch's kernels without AVX2, as on an older CPU",
        {"ATEN_CPU_CAPABILITY": "default"},
    ),
    Condition("epochs-1", "regression", "one epoch fewer than params.yaml says", inject="epochs-1"),
    Condition("lr-x0.5", "regression", "half the learning rate params.yaml says", inject="lr-x0.5"),
    Condition("init-x3", "regression", "initial weights drawn three times too wide", inject="init-x3"),
    Condition("one-core", "perturbation", "the stages pinned to one core", prefix=("taskset", "-c", "0")),
    Condition("lr-x0.8", "regression", "80% of the learning rate params.yaml says", inject="lr-x0.8"),
]
BY_NAME = {c.name: c for c in CONDITIONS}


def _inject(name: str) -> None:
    """Patch a regression into this process's training code, as a code change would bring it."""
    import torch

    from mnist_codec.codecs import models, train

    if name in ("epochs-1", "lr-x0.5", "lr-x0.8"):
        fit_many = train.fit_many

        def patched(*args, **kwargs):
            if name == "epochs-1":
                kwargs["epochs"] = kwargs["epochs"] - 1
            else:
                kwargs["lr"] = kwargs["lr"] * float(name.removeprefix("lr-x"))
            return fit_many(*args, **kwargs)

        train.fit_many = patched
    elif name == "init-x3":
        build = models.build

        def wide(spec):
            model = build(spec)
            with torch.no_grad():
                for module in model.modules():
                    if isinstance(module, torch.nn.Linear | torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                        module.weight.mul_(3.0)
            return model

        models.build = wide
    else:
        raise SystemExit(f"unknown regression {name!r}")


def stage_command(stage: str, args: list[str], condition: Condition) -> list[str]:
    """The command that runs a stage script under ``condition``."""
    script = ["stages/" + stage + ".py", *args]
    if condition.inject:
        script = [str(Path(__file__).resolve()), "_stage", condition.inject, *script]
    return [*condition.prefix, sys.executable, *script]


def run_condition(repo: Path, condition: Condition, work: Path) -> dict:
    """Train both autoencoder stages and evaluate under ``condition``, outputs under ``work``;
    the detail file it wrote. PCA's fit and the data are the workspace's own."""
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(condition.env)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    env["PYTHONPATH"] = str(repo / "src")
    env["DVC_ROOT"] = str(work)  # the tracking helpers' notes stay in the temporary folder
    data = "data/processed"
    stages = [
        ("train_ae", ["--data", data, "--out", f"{work}/models/ae", "--curves", f"{work}/curves/ae"]),
        ("train_deep", ["--data", data, "--out", f"{work}/models/deep", "--curves", f"{work}/curves/deep"]),
    ]
    for stage, args in stages:
        subprocess.run(stage_command(stage, args, condition), cwd=repo, env=env, check=True)
    pca = ["--data", data, "--out", f"{work}/models/pca.npz", "--record", f"{work}/models/pca.json"]
    subprocess.run([*condition.prefix, sys.executable, "stages/pca.py", *pca], cwd=repo, env=env, check=True)
    evaluate = [
        *("--data", data, "--pca", f"{work}/models/pca.npz", "--ae", f"{work}/models/ae"),
        *("--deep", f"{work}/models/deep", "--metrics", f"{work}/metrics.json"),
        *("--detail", f"{work}/metrics_detail.json", "--table-md", f"{work}/comparison.md"),
        *("--table-csv", f"{work}/comparison.csv", "--timings", f"{work}/timings.json"),
        *("--samples", f"{work}/samples.npz"),
    ]
    subprocess.run([sys.executable, "stages/evaluate.py", *evaluate], cwd=repo, env=env, check=True)
    return json.loads((work / "metrics_detail.json").read_text())


def paired_changes(base: dict, cur: dict) -> dict:
    """codec -> metric -> each seed's relative change of its MSE (current / baseline - 1), for
    the codec's MSE and each digit's; and the change of the mean."""
    out = {}
    for codec, b in base.items():
        c = cur.get(codec)
        if not c or codec == "pca":
            continue
        rows = {"mse": (b["mse"], c["mse"])}
        rows.update({f"mse_digit.{d}": (b["mse_digit"][d], c["mse_digit"][d]) for d in b["mse_digit"]})
        out[codec] = {
            name: {
                "per_seed": [y / x - 1 for x, y in zip(bs["per_seed"], cs["per_seed"], strict=True)],
                "mean": cs["mean"] / bs["mean"] - 1,
            }
            for name, (bs, cs) in rows.items()
        }
    return out


def gate(repo: Path, baseline: Path, current: Path) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "mnist_codec.cli", "gate", "--baseline", str(baseline), "--current", str(current)]
    proc = subprocess.run(
        [*cmd, "--rules", str(repo / "metrics_gate.yaml")],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo / "src")},
    )
    return proc.returncode, proc.stdout + proc.stderr


def rebuilt(base: dict, changes: dict) -> dict:
    """The detail file a condition wrote, rebuilt from the baseline and each seed's recorded
    change (MSE and per-digit MSE; PSNR follows from the MSE): what the gate is asked about
    when the tables are rewritten under edited rules."""
    from mnist_codec.evaluation.metrics import psnr
    from mnist_codec.evaluation.stats import summarize as over_seeds

    out = json.loads(json.dumps(base))
    for codec, ch in changes.items():
        entry = out[codec]
        mse = [b * (1 + d) for b, d in zip(base[codec]["mse"]["per_seed"], ch["mse"]["per_seed"], strict=True)]
        entry["mse"], entry["psnr"] = over_seeds(mse), over_seeds([psnr(m) for m in mse])
        for digit, summary in base[codec]["mse_digit"].items():
            d = ch[f"mse_digit.{digit}"]["per_seed"]
            entry["mse_digit"][digit] = over_seeds([b * (1 + x) for b, x in zip(summary["per_seed"], d, strict=True)])
    return out


def verdicts(base: dict, conditions: dict, rules_path: Path) -> None:
    """Each condition's gate verdict under the rules as they are now (``failed``: the metrics)."""
    from mnist_codec.evaluation.gate import compare, load_rules

    rules = load_rules(rules_path)
    for r in conditions.values():
        checks = compare(base, rebuilt(base, r["changes"]), rules)
        r["failed"] = [c.metric for c in checks if not c.ok]
        r["gate_exit"] = 1 if r["failed"] else 0


def summarize(results: dict, rules_path: Path) -> dict:
    """Per codec: the float-path noise the perturbations measured, the paired tolerance the
    rules give it, and what that tolerance implies (false alarms, the smallest catch)."""
    from statistics import NormalDist

    from mnist_codec.evaluation.gate import load_rules, rule_for

    rules = load_rules(rules_path)
    perturbed = [r for r in results.values() if r["kind"] == "perturbation"]
    out = {}
    for codec in CODECS:
        seeds = [x for r in perturbed for x in r["changes"].get(codec, {}).get("mse", {}).get("per_seed", [])]
        means = [r["changes"][codec]["mse"]["mean"] for r in perturbed if codec in r["changes"]]
        digits = [
            x
            for r in perturbed
            for name, v in r["changes"].get(codec, {}).items()
            if name.startswith("mse_digit.")
            for x in v["per_seed"]
        ]
        if not seeds:
            continue
        rule = rule_for(f"{codec}.mse", rules)
        tol = float(rule.paired_rel or 0.0) if rule else float("nan")
        n = max(len(r["changes"][codec]["mse"]["per_seed"]) for r in perturbed if codec in r["changes"])
        sigma = math.sqrt(sum(x * x for x in seeds) / len(seeds))
        z = tol * math.sqrt(n) / sigma if sigma > 0 else float("inf")
        out[codec] = {
            "seed_changes": len(seeds),
            "sigma": sigma,
            "max_abs_seed": max(abs(x) for x in seeds),
            "max_abs_mean": max(abs(x) for x in means),
            "max_abs_digit": max((abs(x) for x in digits), default=0.0),
            "n_seeds": n,
            "tolerance": tol,
            "z": z,
            "false_alarm": (1 - NormalDist().cdf(z)) if math.isfinite(z) else 0.0,
            "smallest_caught_elsewhere": tol + max((-m for m in means), default=0.0) + 0.0,
        }
    return out


def machine() -> str:
    from mnist_codec.machine import describe

    return describe() + ", CPU only"


def write(a: argparse.Namespace, params: dict, conditions: dict, previous: dict | None = None) -> dict:
    merged = {n: conditions[n] for n in BY_NAME if n in conditions}
    verdicts(json.loads((REPO / "reports/metrics_detail.json").read_text()), merged, REPO / "metrics_gate.yaml")
    record = {
        "machine": previous["machine"] if previous else machine(),
        "date": previous["date"] if previous else time.strftime("%Y-%m-%d"),
        "profile": f"{params['train']['epochs']} epochs, {params['n_seeds']} seeds, all images",
        "conditions": merged,
        "noise": summarize(merged, REPO / "metrics_gate.yaml"),
    }
    a.out.write_text(json.dumps(record, indent=2) + "\n")
    a.md.write_text(markdown(record))
    return record


def main(argv: list[str]) -> int:
    if argv and argv[0] == "_stage":  # the child that runs one stage with a regression patched in
        _inject(argv[1])  # the code on PYTHONPATH: the project's that run_condition names
        sys.argv = argv[2:]
        runpy.run_path(argv[2], run_name="__main__")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(BY_NAME), help="these conditions only")
    parser.add_argument("--out", type=Path, default=HERE / "gate_calibration.json")
    parser.add_argument("--md", type=Path, default=HERE / "GATE.md")
    parser.add_argument("--tables-only", action="store_true", help="rewrite the tables from --out, run nothing")
    a = parser.parse_args(argv)
    if a.tables_only:  # after an edit of metrics_gate.yaml: the same measurements, the new tolerances
        import yaml

        record = json.loads(a.out.read_text())
        write(a, yaml.safe_load((REPO / "params.yaml").read_text()), record["conditions"], record)
        print(a.md.read_text())
        return 0
    baseline = REPO / "reports/metrics_detail.json"
    if not baseline.exists() or not (REPO / "models/pca.npz").exists():
        raise SystemExit("run `make repro` first: the calibration needs its data, PCA fit and metrics")
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    base = json.loads(baseline.read_text())
    results: dict = {}
    record: dict = {}
    previous = json.loads(a.out.read_text())["conditions"] if a.out.exists() and a.only else {}
    for condition in [BY_NAME[n] for n in (a.only or BY_NAME)]:
        # the stages write only under data/, models/ and reports/: a temporary folder in models/
        with tempfile.TemporaryDirectory(prefix=f".calibration-{condition.name}-", dir=REPO / "models") as tmp:
            start = time.perf_counter()
            cur = run_condition(REPO, condition, Path(tmp))
            code, out = gate(REPO, baseline, Path(tmp) / "metrics_detail.json")
        results[condition.name] = {
            "kind": condition.kind,
            "what": condition.what,
            "changes": paired_changes(base, cur),
            "gate_exit": code,
            "gate": out,
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"{condition.name}: gate exit {code}\n{out}", flush=True)
        record = write(a, params, {**previous, **results})  # after each: a stopped run keeps what it measured
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
