# Set-up and everyday commands. `make demo` and `make test` each install what they need.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export COGRAPH_LAKE_ROOT ?= $(CURDIR)/lake

.PHONY: install demo demo-cross-domain demo-e2e demo-neural test lint ui serve bench bench-devices quality clean home

## The Dagster instance folder: freshness policies on, one lake-writing run at a time
## (full refresh, incremental update, maintenance), dead runs marked failed by the daemon.
$(DAGSTER_HOME)/dagster.yaml: orchestration/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp orchestration/dagster.yaml $@

home: $(DAGSTER_HOME)/dagster.yaml

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned (a local CPU wheel where pip finds one; else PyPI's CUDA build,
	# which runs on the CPU too: about 3 minutes and 5 GB here)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## The optional JVM packages (delta-spark; GraphFrames where Maven serves it) into .jvm/:
## Spark loads them from there, so no run resolves anything (spark_jobs/jvm_packages.py).
.jvm/.fetched: $(BIN)/.installed spark_jobs/jvm_packages.py
	$(BIN)/python -m spark_jobs.jvm_packages
	touch $@

## Headless Chromium for the browser test of the Dagster UI, from Debian's packages where
## apt-get can install them; elsewhere the test skips and says why.
$(VENV)/.chromium:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
		apt-get update -qq >/dev/null 2>&1 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium >/dev/null 2>&1; } || echo "No Chromium installed: the browser UI test will skip"
	@mkdir -p $(VENV) && touch $@

install: $(BIN)/.installed .jvm/.fetched $(VENV)/.chromium

## Run the full_refresh job on the built-in synthetic dataset (every asset but the
## incremental one, which has nothing to apply yet), then say what it made and where to look.
demo: install home
	$(BIN)/dg launch --job full_refresh -c orchestration/demo_run.yaml
	$(BIN)/python -m orchestration.summary

## The cross-domain cold-start demo: the two-domain synthetic data (music, then live as
## the target) through cross_domain_refresh into lake-cross-domain/, then the summary
## (the evaluation is the asset cross_domain_evaluation in the UI).
demo-cross-domain: install home
	COGRAPH_LAKE_ROOT=$(CURDIR)/lake-cross-domain $(BIN)/dg launch \
		--job cross_domain_refresh -c orchestration/cross_domain_run.yaml
	COGRAPH_LAKE_ROOT=$(CURDIR)/lake-cross-domain $(BIN)/python -m orchestration.summary

## End-to-end mode (E2E-GRec) on the demo lake: e2e_refresh trains the ranker with the GNN
## and every comparison arm; `make serve` then answers /v1/recommend with strategy "e2e".
## A failed gate fails the run; the summary still says what was measured.
demo-e2e: install home
	$(BIN)/dg launch --job e2e_refresh -c orchestration/demo_run.yaml; status=$$?; \
		$(BIN)/python -m orchestration.summary; exit $$status

## Neural relevance (GMP-GR) on the demo lake, after `make demo`: neural_refresh trains
## MUIRML over the served embeddings; `make serve` then answers strategy "neural".
demo-neural: install home
	$(BIN)/dg launch --job neural_refresh -c orchestration/demo_run.yaml; status=$$?; \
		$(BIN)/python -m orchestration.summary; exit $$status

## Lint and run the test suite (real Spark, real Delta tables, real Dagster webserver).
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

## The Dagster UI on http://127.0.0.1:3000 with the runs that `make demo` made.
ui: install home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## The similar-items service on http://127.0.0.1:8000 over the demo lake's latest index.
serve: install
	$(BIN)/python -m serving --lake $(COGRAPH_LAKE_ROOT) --host 127.0.0.1 --port 8000

## Every benchmark in bench/ (after `make demo`: some read its lake); writes docs/benchmarks.md.
bench: install bench-devices
	$(BIN)/python -m bench.hasp_partition
	$(BIN)/python -m bench.serving --lake $(COGRAPH_LAKE_ROOT)
	$(BIN)/python -m bench.coengagement --sizes 100000 1000000 10000000
	$(BIN)/python -m bench.graph_build --sizes 100000 1000000 10000000
	$(BIN)/python -m bench.incremental
	$(BIN)/python -m bench.end_to_end --synthetic 100000 1000000

## docs/quality.md: every model and baseline on the demo data and MovieLens, and the served
## model's ablation on MovieLens (about 45 minutes on 2 cores); then the cross-domain
## section (two-domain synthetic and MovieLens by genre family).
quality: install
	$(BIN)/python -m bench.quality
	$(BIN)/python -m bench.cross_domain

## The benchmarks with a CPU and a CUDA column (run them on a GPU machine too), then the join.
bench-devices: install
	$(BIN)/python -m bench.training --synthetic 50000 --repeats 3
	$(BIN)/python -m bench.inference --synthetic 200000 --budgets 256 512 1024 4096
	$(BIN)/python -m bench.ann
	$(BIN)/python -m bench.devices

clean:
	rm -rf lake lake-cross-domain .dagster_home
