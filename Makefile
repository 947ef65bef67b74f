# mnist-codec. `make help` lists the targets. Each one sets up .venv first, with what it needs:
# `make install` what running needs; `make install-team` adds the team extras (S3, PostgreSQL,
# logins) for `make tracking-server`; `make install-dev` adds those, the docs tools and the test tools.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra installer arguments (uv pip install takes pip's), e.g. PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PIP_ARGS ?=
STAMP := $(VENV)/.installed
TEAM_STAMP := $(VENV)/.installed-team
DEV_STAMP := $(VENV)/.installed-dev
DOCS_STAMP := $(VENV)/.installed-docs
CLUSTER_STAMP := $(VENV)/.installed-cluster
TUNE_STAMP := $(VENV)/.installed-tune
SERVE_STAMP := $(VENV)/.installed-serve
BENCH_STAMP := $(VENV)/.installed-bench
RUN := PATH="$(abspath $(BIN)):$$PATH"

.PHONY: help install install-team install-dev install-docs install-cluster install-tune install-serve install-bench repro gate compare test test-full mutation lint docs docs-serve bench sweep \
	frontier tune notebook-table ui tracking-server serve-model serve-ray clean-venv

help:
	@echo "make repro            run the pipeline (dvc repro): reports/, models in MLflow"
	@echo "make gate             did the results regress? the fresh run against HEAD, HEAD against the base"
	@echo "make compare          the experiments side by side: every codec's MSE, then the params each changed"
	@echo "make ui               the MLflow UI on http://127.0.0.1:$(UI_PORT), opened on the training runs"
	@echo "make test             the fast tests (a few minutes); make test-full: every test, as CI runs"
	@echo "make mutation         would the tests notice a wrong decision? mutmut's score per module (floor 90%)"
	@echo "make lint             ruff (lint and format) and mypy, as CI and pre-commit run them"
	@echo "make docs             build the docs site into site/ (strict); make docs-serve: on 127.0.0.1:$(DOCS_PORT)"
	@echo "make sweep            the rate-distortion curve; make frontier: the strongest 32-number codec"
	@echo "make tune             search tune.yaml (Ray Tune, Optuna, ASHA), prove the best: reports/frontier.json"
	@echo "make notebook-table   the comparison under the notebook's protocol: reports/protocols/notebook.md"
	@echo "make bench            side-by-side timings: benchmarks/RESULTS.md"
	@echo "make tracking-server  the team's MLflow server on 127.0.0.1:$(TRACKING_PORT)"
	@echo "make serve-model      the champion over HTTP on 127.0.0.1:$(SERVE_PORT) (MLflow's scoring server)"
	@echo "make serve-ray        the champion on Ray Serve on 127.0.0.1:$(RAY_SERVE_PORT): batched, JSON or npy"

install: $(STAMP)
install-team: $(TEAM_STAMP)
install-dev: $(DEV_STAMP)
install-docs: $(DOCS_STAMP)
install-cluster: $(CLUSTER_STAMP)
install-tune: $(TUNE_STAMP)
install-serve: $(SERVE_STAMP)
install-bench: $(BENCH_STAMP)

# constraints.txt is the lock: exact versions of every dependency. uv installs them (seconds where
# pip takes minutes; uv itself is installed by pip, at the lock's version). A folder of wheels that
# pip is pointed at (PIP_FIND_LINKS, such as a CPU build of torch on disk) is searched too.
UV := $(BIN)/uv
FIND_LINKS := $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))
INSTALL = $(UV) pip install --quiet --compile-bytecode --python $(BIN)/python $(FIND_LINKS) $(PIP_ARGS) -c constraints.txt
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	$(INSTALL) -e .
	@touch $(STAMP)

$(TEAM_STAMP): $(STAMP)
	$(INSTALL) -e '.[team]'
	@touch $(TEAM_STAMP)

$(DEV_STAMP): $(STAMP)
	$(INSTALL) -e '.[dev]'
	@touch $(DEV_STAMP) $(DOCS_STAMP) $(TEAM_STAMP) $(CLUSTER_STAMP) $(TUNE_STAMP) $(SERVE_STAMP) $(BENCH_STAMP)

$(CLUSTER_STAMP): $(STAMP)
	$(INSTALL) -e '.[cluster]'
	@touch $(CLUSTER_STAMP)

$(TUNE_STAMP): $(STAMP)
	$(INSTALL) -e '.[tune]'
	@touch $(TUNE_STAMP)

$(SERVE_STAMP): $(STAMP)
	$(INSTALL) -e '.[serve]'
	@touch $(SERVE_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(INSTALL) -e '.[bench]'
	@touch $(BENCH_STAMP) $(SERVE_STAMP)

$(DOCS_STAMP): $(STAMP)
	$(INSTALL) -e '.[docs]'
	@touch $(DOCS_STAMP)

# dvc repro, then the README's headline table from the reports it wrote (mnist-codec readme).
repro: install
	$(RUN) dvc repro
	$(RUN) mnist-codec readme

# The gate (docs/gate.md), exactly as CI asks it, after `make repro`: reproduce (does the fresh
# run give HEAD's committed reports/metrics_detail.json?) and regress (are HEAD's committed results
# worse than the base, or than the accepted results in metrics_accepted.yaml?). The base:
# GATE_BASE (a CI service's pull-request base), else the merge-base with origin/main, else the
# results before the last change to them. GATE_ARGS adds arguments, e.g. GATE_ARGS="--only regress"
# (no fresh run needed) or GATE_ARGS="--base main --current my-exp" (an experiment against main).
# A regression passes only once accepted: .venv/bin/mnist-codec accept --reason "..." (then commit).
GATE_ARGS ?=
gate: install
	$(RUN) mnist-codec gate $(GATE_ARGS)

# The experiments side by side, in two tables that fit a 120-column terminal (dvc exp show): every
# codec's MSE (metrics.json's `<codec>.mse`, the mean over seeds), then the params that differ
# between them. `dvc metrics diff main <experiment>` gives every headline number of one experiment.
# COMPARE_ARGS adds dvc exp show arguments to both, e.g. COMPARE_ARGS="-A" (every commit's).
COMPARE_ARGS ?=
compare: install
	$(RUN) dvc exp show --no-pager --keep 'Experiment|.*\.mse$$' --drop '.*' $(COMPARE_ARGS)
	$(RUN) dvc exp show --no-pager --only-changed --drop 'Created|.*/|.*\.(mse|mse_ci95|psnr|n_seeds)$$' $(COMPARE_ARGS)

# The fast tests: unit tests and one in-process smoke run of the whole pipeline (tests/smoke.py),
# no PostgreSQL needed. `make test-full` runs every test (the DVC end-to-end runs, the gate's
# seeded runs, the real PostgreSQL, S3 and MLflow servers, the whole fault suite): what CI runs.
# `make test` spreads the test files over the cores (pytest-xdist, PYTEST_WORKERS=auto; 1 runs
# them in one process). PYTEST_ARGS adds pytest arguments, e.g. PYTEST_ARGS="-k registry".
PYTEST_ARGS ?=
PYTEST_WORKERS ?= auto
# test-full spreads its test files over one worker per core (3 workers on 2 cores measured
# slower: docs/tests.md); a file's tests stay on one worker, where its module-scoped fixtures
# are built once (--dist loadfile), the heaviest files first (tests/conftest.py).
PYTEST_FULL_WORKERS ?= 2
test: install-dev
	$(RUN) python -m pytest -m "not full" -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-full: install-dev
	$(RUN) python -m pytest -n $(PYTEST_FULL_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 \
		--cov --cov-report=term $(PYTEST_ARGS)

# Mutation testing (tests/mutation.py, docs/tests.md): mutmut makes small changes ("mutants") in the
# modules that decide ([tool.mutmut] in pyproject.toml) and runs the fast tests that reach each one;
# then the score of each module (killed mutants, the reviewed equivalents of
# tests/mutation_equivalents.yaml not counted), every survivor as a diff, and a failure below the
# floor. From scratch each time, into mutants/ (its log: mutants/mutmut.log). MUTATION_ARGS adds
# arguments, e.g. MUTATION_ARGS="--rescore" (score the last run again, after editing the list), or
# MUTATION_ARGS="--changed" (CI's: only the modules the change reaches, from the gate's base).
MUTATION_ARGS ?=
mutation: install-dev
	$(RUN) python tests/mutation.py $(MUTATION_ARGS)

# Style and types, as CI runs them (and pre-commit: .pre-commit-config.yaml): ruff's rules and its
# formatter over the repository, mypy over src/ (settings in pyproject.toml), and the GitHub Actions
# workflow users copy, against the workflow schema check-jsonschema bundles (offline). Fails on any
# finding; `.venv/bin/ruff check --fix . && .venv/bin/ruff format .` fixes what can be fixed mechanically.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# The docs site (mkdocs-material): pages in docs/, results included from reports/ as they are.
DOCS_PORT ?= 8000
docs: install-docs
	$(RUN) NO_MKDOCS_2_WARNING=1 mkdocs build --strict

docs-serve: install-docs
	$(RUN) NO_MKDOCS_2_WARNING=1 mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

# 1 seed vs 3, the notebook vs the pipeline stage by stage under both protocols, the CPU
# training plans (~45 min together), and the champion on Ray Serve and on MLflow's server under
# Locust's load (~17 min, a 10-minute soak among them; needs `make repro` first); writes
# benchmarks/RESULTS.md. ONLY=serve runs one of them (notebook, seeds, precision, plans, cluster,
# serve); BENCH_ARGS="--before <commit>" times that commit's pipeline beside this one's.
ONLY ?=
BENCH_ARGS ?=
bench: install-bench
	$(RUN) python benchmarks/bench_pipeline.py $(if $(ONLY),--only $(ONLY)) $(BENCH_ARGS)

# The rate-distortion curve: one queued DVC experiment per code size (rd-<k>), run by DVC's
# queue, then reports/rate_distortion.{png,md,csv}. SWEEP_ARGS adds -S overrides to every one.
# The experiments run in temporary copies; PCA's exact curve is computed on the workspace's
# splits, so the preprocess stage is brought up to date here first (cached after one run).
SWEEP_SIZES ?= 2 4 8 16 32 64 128
SWEEP_ARGS ?=
SWEEP_JOBS ?= 1
# With CLUSTER=HOST:PORT (or RAY_ADDRESS set, Ray's own convention) the experiments run on that
# Ray cluster instead, one task per code size, each pushed to origin and pulled back here
# (docs/cluster.md): this checkout's commit must be on origin, MLFLOW_TRACKING_URI the team's server.
CLUSTER ?= $(RAY_ADDRESS)
ifneq ($(strip $(CLUSTER)),)
sweep: install-cluster
	$(RUN) dvc repro preprocess
	$(RUN) mnist-codec sweep --cluster $(CLUSTER) --sizes $(SWEEP_SIZES) $(SWEEP_ARGS)
else
sweep: install
	$(RUN) dvc exp remove $(addprefix rd-,$(SWEEP_SIZES)) >/dev/null 2>&1 || true
	$(RUN) dvc repro preprocess
	for k in $(SWEEP_SIZES); do \
		$(RUN) dvc exp run --queue -n rd-$$k -S latent_dim=$$k $(SWEEP_ARGS) || exit 1; \
	done
	$(RUN) dvc queue start -j $(SWEEP_JOBS)
	$(RUN) mnist-codec sweep-report --wait
endif

# The frontier codec, reports/frontier.json: each candidate in src/mnist_codec/experiments/frontier.py is a
# DVC experiment scored on the validation split (the last 10,000 training images, one seed); the
# best is run on the test images (default seeds). Models go to MLflow like any run's. About 35 min
# on 2 CPU cores. FRONTIER_ARGS adds -S overrides to every run, as SWEEP_ARGS does the sweep's.
FRONTIER_ARGS ?=
frontier: install
	$(RUN) mnist-codec frontier $(FRONTIER_ARGS)

# The strongest 32-number codec found by a search (docs/tune.md): Ray Tune runs trials that Optuna's
# TPE sampler proposes from tune.yaml's space, on the validation split, one seed each; ASHA stops
# weak ones early. The study lives in .tune/optuna.db (or TUNE_ARGS="--storage postgresql+psycopg://...")
# and a second `make tune` resumes it. Then the best runs on the test images as the DVC experiment
# `tuned` (default seeds): reports/frontier.json. CLUSTER=HOST:PORT runs the trials on that Ray cluster.
# TUNE_ARGS: --search-only, --proof-only, --trials N, --time-s S, -S KEY=VALUE (added to the test run).
TUNE_ARGS ?=
tune: install-tune
	$(RUN) mnist-codec tune $(if $(strip $(CLUSTER)),--cluster $(CLUSTER)) $(TUNE_ARGS)

# The comparison under the notebook's protocol (all 70,000 images, as the notebook did): one DVC
# experiment, `dvc exp run --temp -n protocol-notebook -S data.protocol=notebook`, its table copied
# from the experiment's commit to reports/protocols/notebook.md (and .csv). About 5 min on 2 cores.
PROTOCOL_ARGS ?=
notebook-table: install
	$(RUN) mnist-codec protocol-table notebook $(PROTOCOL_ARGS)

# Three servers, three names, three ports, each bound to 127.0.0.1:
# the UI on this checkout's own store; it prints the address of the training runs table.
UI_PORT ?= 5000
ui: install
	$(RUN) mnist-codec ui --port $(UI_PORT)

# The team's tracking server (docs: Working as a team): MLflow's server with its artifact
# proxy; store: sqlite in $(SERVER_DIR), or BACKEND=postgresql://user:pw@host:port/db;
# AUTH=1 runs MLflow's basic-auth app, with the admin password from MLFLOW_AUTH_ADMIN_PASSWORD.
TRACKING_PORT ?= 5050
SERVER_DIR ?= .mlflow-server
BACKEND ?=
AUTH ?=
tracking-server: install-team
	$(RUN) mnist-codec server --port $(TRACKING_PORT) --dir "$(SERVER_DIR)" \
		$(if $(BACKEND),--backend-store-uri "$(BACKEND)") $(if $(AUTH),--auth)

# The registered champion over HTTP (POST /invocations), in this environment: no conda, no
# downloads. MODEL=3 serves version 3; MLFLOW_TRACKING_URI picks another store.
MODEL ?= champion
SERVE_PORT ?= 5001
serve-model: install
	$(BIN)/mnist-codec serve --model "$(MODEL)" --port $(SERVE_PORT)

# The same champion on Ray Serve (docs/serving.md): requests batched on the server, JSON as above
# or application/x-npy bodies; replicas, batching and limits in serve.yaml. Ray runs on this
# machine, every node on 127.0.0.1; CLUSTER=HOST:PORT (or RAY_ADDRESS) deploys it on that cluster.
# Ctrl-C stops Ray and every replica (on a cluster: deletes the application).
RAY_SERVE_PORT ?= 5002
RAY_SERVE_CONFIG ?= serve.yaml
serve-ray: install-serve
	$(RUN) mnist-codec serve --ray --model "$(MODEL)" --port $(RAY_SERVE_PORT) --config "$(RAY_SERVE_CONFIG)"$(if $(strip $(CLUSTER)), --cluster $(CLUSTER))

clean-venv:
	rm -rf $(VENV)
