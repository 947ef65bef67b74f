"""The caching rule of the module layout, as data: which stages an edit of each module re-runs.

DVC re-runs a stage when one of its ``deps`` changes. The rule (docs/pipeline.md, "Layout"):

* the HTML report and its figures -> report only;
* evaluation, metrics, the comparison table, the promotion rule -> evaluate and report;
* the gate, the ``mnist-codec`` command, encode/decode, the servers (MLflow's and Ray Serve's), the sweep and frontier
  commands, the benchmark -> no stage;
* side channels -- how a run is logged to MLflow, progress, timing, the stage runner, params
  validation -- change no output: no stage;
* the model definitions, the training loop, stacking, seeding, the device, data loading -> the
  trainings (and, through their outputs, everything downstream).

``STATUS`` is what ``dvc status`` must say after an edit of each file (tests/test_pipeline_e2e.py
edits each in a copy of the repository and asks DVC). ``SIDE_CHANNELS`` are the project modules
a stage may import without listing them in its deps, each with the reason; the import trace
fails on any other imported module missing from a stage's deps.
"""

from __future__ import annotations

BENCH_MODULES = (
    "__init__", "common", "run", "notebook", "seeds", "precision", "plans", "cluster", "serve", "serve_report",
    "handle_calls",
)  # fmt: skip
STAGES = ("fetch", "preprocess", "pca", "train_ae", "train_deep", "evaluate", "report")
TRAININGS = {"pca", "train_ae", "train_deep"}
EVERY = set(STAGES)
P = "src/mnist_codec/"

# module -> (stages it is a side channel of, why editing it changes none of their outputs)
SIDE_CHANNELS: dict[str, tuple[set[str], str]] = {
    P + "params.py": (
        EVERY,
        (
            "validation only: a stage reads every value from params.yaml, which DVC tracks "
            "key by key, and refuses a file missing a key instead of using a default"
        ),
    ),
    P + "config.py": (EVERY, "reads and checks YAML files: the one loader and its messages, behind params validation"),
    P + "keys.py": (EVERY, "names params' dotted keys: for validation and for the params MLflow records"),
    P + "runner.py": (EVERY, "runs the stage body after checking params and paths; errors, signals, logging"),
    P + "interrupts.py": (EVERY, "when Ctrl-C and SIGTERM are raised, not what is written"),
    P + "timing.py": (EVERY, "times the stage for the benchmark"),
    P + "atomic.py": (EVERY, "where and when an output's bytes land (temporary name, rename), not what they are"),
    P + "workspace.py": (EVERY, "finds the repository root that output paths are checked against"),
    P + "progress.py": (TRAININGS, "shows per-epoch losses"),
    P + "tracking/__init__.py": (EVERY, "MLflow: runs, tags, params, metrics, the registry"),
    P + "tracking/store.py": (EVERY, "MLflow: where the store is, a server that does not answer"),
    P + "tracking/runs.py": (EVERY, "MLflow: runs, tags, params, metrics"),
    P + "tracking/tags.py": (EVERY, "MLflow: the tags every run carries (commit, host, stage, pipeline)"),
    P + "tracking/registry.py": (EVERY, "MLflow: registered versions, their tags, the champion alias"),
    P + "tracking/fingerprint.py": (EVERY, "MLflow: the registry tags that find a model's version again"),
    P + "serving/packaging.py": (TRAININGS, "the MLflow model logged with each training run, and its registration"),
    P + "tracking/figures.py": (TRAININGS, "which figures a training run logs to MLflow"),
    P + "serving/__init__.py": (TRAININGS, "the MLflow model logged with each training run"),
    P + "serving/model.py": (TRAININGS, "the MLflow model logged with each training run"),
    P + "serving/served_model.py": (TRAININGS, "the code MLflow runs to build a logged model"),
    P + "reporting/__init__.py": (TRAININGS, "figures logged to MLflow by the training runs"),
    P + "reporting/plots.py": (TRAININGS, "figures logged to MLflow by the training runs"),
    P + "evaluation/__init__.py": (TRAININGS, "the seeds' summary logged on a codec's parent run"),
    P + "evaluation/stats.py": (
        TRAININGS,
        "the seeds' summary logged on a codec's parent run, the bands of logged loss curves",
    ),
}

_face = {P + "__init__.py", P + "errors.py", P + "pipeline/__init__.py"}
_groups: list[tuple[set[str], set[str]]] = [
    (_face, EVERY),  # the package face: docstrings and the project's exceptions
    ({"stages/fetch.py", P + "pipeline/fetch.py", P + "data/mnist.py"}, {"fetch"}),
    ({P + "data/__init__.py"}, EVERY),  # the package face of the data, and a digit's size
    ({"stages/preprocess.py", P + "pipeline/preprocess.py", P + "data/prepare.py", P + "data/idx.py"}, {"preprocess"}),
    ({P + "data/splits.py"}, {"preprocess", "pca", "train_ae", "train_deep", "evaluate"}),
    ({P + "fileio.py"}, EVERY - {"fetch"}),
    ({"stages/pca.py", P + "pipeline/pca.py"}, {"pca"}),
    ({P + "codecs/pca.py"}, {"pca", "evaluate"}),
    ({P + "codecs/__init__.py", P + "codecs/models.py"}, {"pca", "train_ae", "train_deep", "evaluate"}),
    (
        {
            P + f"codecs/{m}.py"
            for m in ("train", "trainer", "checkpoints", "graphs", "schedules", "stacking", "seeding", "device")
        }
        | {P + "pipeline/training.py", P + "machine.py"},
        {"train_ae", "train_deep"},
    ),
    ({"stages/train_ae.py", P + "pipeline/train_ae.py"}, {"train_ae"}),
    ({"stages/train_deep.py", P + "pipeline/train_deep.py"}, {"train_deep"}),
    (
        {
            "stages/evaluate.py",
            P + "pipeline/evaluate.py",
            P + "evaluation/metrics.py",
            P + "evaluation/promotion.py",
            P + "evaluation/digest.py",
        },
        {"evaluate"},
    ),
    ({P + "evaluation/__init__.py", P + "evaluation/stats.py", P + "evaluation/table.py"}, {"evaluate", "report"}),
    (
        {
            "stages/report.py",
            P + "pipeline/report.py",
            P + "reporting/__init__.py",
            P + "reporting/html.py",
            P + "reporting/plots.py",
            P + "reporting/templates/report.html.j2",
        },
        {"report"},
    ),
    # side channels and commands: no stage
    (
        {m for m, (_, _) in SIDE_CHANNELS.items() if not m.startswith((P + "evaluation/", P + "reporting/"))}
        | {
            *(P + f"cli/{m}.py" for m in ("__init__", "__main__", "options", "results", "models", "experiments")),
            P + "evaluation/gate.py",
            P + "evaluation/gate_report.py",
            P + "evaluation/history.py",
            P + "evaluation/acceptance.py",
            P + "evaluation/verdict.py",
            P + "tracking/verdicts.py",
            P + "tracking/server.py",
            P + "serving/served_model.py",
            P + "serving/digits.py",
            P + "experiments/__init__.py",
            P + "experiments/exps.py",
            P + "experiments/sweep.py",
            P + "experiments/frontier.py",
            P + "experiments/protocols.py",
            P + "experiments/cluster.py",
            P + "experiments/node.py",
            P + "experiments/guard.py",
            P + "readme.py",
            P + "loopback.py",
            P + "tracking/ui.py",
            P + "serving/http.py",
            P + "serving/wire.py",
            P + "serving/config.py",
            P + "serving/ray_serve.py",
            P + "tuning/__init__.py",
            P + "tuning/space.py",
            P + "tuning/trial.py",
            P + "tuning/search.py",
            P + "tuning/study.py",
            P + "tuning/records.py",
            P + "tuning/proposals.py",
            P + "tuning/proof.py",
            "benchmarks/bench_pipeline.py",
            "benchmarks/notebook_baseline.py",
            *(f"benchmarks/bench/{m}.py" for m in BENCH_MODULES),
            "benchmarks/locustfile.py",
        },
        set(),
    ),
]
STATUS: dict[str, set[str]] = {m: stages for group, stages in _groups for m in group}

# What each kind of module may re-run at most (the rule above), and what the trainings' code
# must re-run at least.
AT_MOST = {
    P + "reporting/": {"report"},
    P + "evaluation/": {"evaluate", "report"},
    P + "tracking/": set(),
    P + "serving/": set(),
    P + "experiments/": set(),
    P + "tuning/": set(),
    P + "cli/": set(),
    "benchmarks/": set(),
}
AT_LEAST = {
    **{
        P + f"codecs/{m}.py": {"train_ae", "train_deep"}
        for m in ("models", "train", "trainer", "checkpoints", "graphs", "schedules", "stacking", "seeding", "device")
    },
    P + "codecs/pca.py": {"pca"},
    P + "data/splits.py": TRAININGS,
    P + "data/idx.py": {"preprocess"},
}
