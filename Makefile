# mnist-codec: `make repro` runs the pipeline, `make test` the tests. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip arguments, e.g. PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PIP_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: install repro test test-fast bench ui clean-venv

install: $(STAMP)

# constraints.txt is the lock: exact versions of every dependency.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) \
		-c constraints.txt -e '.[dev]'
	@touch $(STAMP)

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" python -m pytest

test-fast: install
	PATH="$(CURDIR)/$(BIN):$$PATH" python -m pytest -m "not slow"

# 1 seed vs 3, and the notebook vs the pipeline, side by side (~25 min); writes benchmarks/RESULTS.md
bench: install
	$(BIN)/python benchmarks/bench_pipeline.py

ui: install
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--default-artifact-root "$(CURDIR)/mlruns" --host 127.0.0.1 --port 5000 --workers 1

clean-venv:
	rm -rf $(VENV)
