# mnist-codec: `make repro` runs the pipeline, `make test` the tests. Both set up .venv first:
# `make install` what running needs; `make install-team` adds the team extras (S3, PostgreSQL,
# logins) for `make server`; `make install-dev` adds those and the test tools.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip arguments, e.g. PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PIP_ARGS ?=
STAMP := $(VENV)/.installed
TEAM_STAMP := $(VENV)/.installed-team
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-team install-dev repro test test-fast bench sweep frontier ui server serve clean-venv

install: $(STAMP)
install-team: $(TEAM_STAMP)
install-dev: $(DEV_STAMP)

# constraints.txt is the lock: exact versions of every dependency.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) \
		-c constraints.txt -e .
	@touch $(STAMP)

$(TEAM_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) \
		-c constraints.txt -e '.[team]'
	@touch $(TEAM_STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) \
		-c constraints.txt -e '.[dev]'
	@touch $(DEV_STAMP)

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

test: install-dev
	PATH="$(CURDIR)/$(BIN):$$PATH" python -m pytest

test-fast: install-dev
	PATH="$(CURDIR)/$(BIN):$$PATH" python -m pytest -m "not slow"

# 1 seed vs 3, the notebook vs the pipeline stage by stage under both protocols, the CPU
# training plans (~45 min together), and the champion served over HTTP vs in-process (~2 min;
# needs `make repro` first); writes benchmarks/RESULTS.md. BENCH_ARGS="--before <commit>"
# times that commit's pipeline beside this one's.
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/bench_pipeline.py $(BENCH_ARGS)

# The rate-distortion curve: one queued DVC experiment per code size (rd-<k>), run by DVC's
# queue, then reports/rate_distortion.{png,md,csv}. SWEEP_ARGS adds -S overrides to every one.
# The experiments run in temporary copies; PCA's exact curve is computed on the workspace's
# splits, so the preprocess stage is brought up to date here first (cached after one run).
SWEEP_SIZES ?= 2 4 8 16 32 64 128
SWEEP_ARGS ?=
SWEEP_JOBS ?= 1
sweep: install
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc exp remove $(addprefix rd-,$(SWEEP_SIZES)) >/dev/null 2>&1 || true
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro preprocess
	for k in $(SWEEP_SIZES); do \
		PATH="$(CURDIR)/$(BIN):$$PATH" dvc exp run --queue -n rd-$$k -S latent_dim=$$k $(SWEEP_ARGS) || exit 1; \
	done
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc queue start -j $(SWEEP_JOBS)
	PATH="$(CURDIR)/$(BIN):$$PATH" mnist-codec sweep-report --wait

# The frontier codec, reports/frontier.json: each candidate in src/mnist_codec/experiments/frontier.py is a
# DVC experiment scored on the validation split (the last 10,000 training images, one seed); the
# best is run on the test images (default seeds). Models go to MLflow like any run's. About 35 min
# on 2 CPU cores. FRONTIER_EXTRA adds KEY=VALUE overrides to every run (small profiles).
FRONTIER_EXTRA ?=
frontier: install
	PATH="$(CURDIR)/$(BIN):$$PATH" mnist-codec frontier --extra "$(FRONTIER_EXTRA)"

ui: install
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--default-artifact-root "$(CURDIR)/mlruns" --host 127.0.0.1 --port 5000 --workers 1

# The team's tracking server on 127.0.0.1 (README, "Working as a team"): MLflow's server with
# its artifact proxy; store: sqlite in $(SERVER_DIR), or BACKEND=postgresql://user:pw@host:port/db;
# AUTH=1 runs MLflow's basic-auth app, with the admin password from MLFLOW_AUTH_ADMIN_PASSWORD.
SERVER_PORT ?= 5000
SERVER_DIR ?= .mlflow-server
BACKEND ?=
AUTH ?=
server: install-team
	PATH="$(CURDIR)/$(BIN):$$PATH" mnist-codec server --port $(SERVER_PORT) --dir "$(SERVER_DIR)" \
		$(if $(BACKEND),--backend-store-uri "$(BACKEND)") $(if $(AUTH),--auth)

# The registered champion over HTTP on 127.0.0.1 (POST /invocations), in this environment:
# no conda, no downloads. MODEL=3 serves version 3; MLFLOW_TRACKING_URI picks another store.
MODEL ?= champion
PORT ?= 5001
serve: install
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
	mlflow models serve -m "$$($(BIN)/python -c 'import sys; from mnist_codec.tracking.registry import model_uri; print(model_uri(sys.argv[1]))' '$(MODEL)')" \
		--env-manager local --host 127.0.0.1 --port $(PORT) --workers 1

clean-venv:
	rm -rf $(VENV)
