# The front door. Every target installs what it needs first (a fresh machine is fine).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel on this machine's disk; override on a GPU box, e.g. TORCH_SPEC="torch==2.5.1".
TORCH_SPEC ?= torch==2.13.0
# Data root: $LATENTFLOW_DATA if set, else ./data (see README "Data").
export LATENTFLOW_DATA ?= $(CURDIR)/data
EXPERIMENT ?= cpu/jsb/af_af
# `make train` and `make reproduce-cpu` run on jemalloc where it is installed (`apt-get install
# libjemalloc2`): the fastest allocator measured (README "Allocator"); `make train JEMALLOC=`
# runs on glibc with latentflow's start-up tuning instead.
JEMALLOC ?= $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
	/usr/lib/aarch64-linux-gnu/libjemalloc.so.2 /usr/lib64/libjemalloc.so.2 /usr/lib/libjemalloc.so.2))
comma := ,
ALLOC_ENV := $(if $(JEMALLOC),LD_PRELOAD=$(JEMALLOC) MALLOC_CONF=dirty_decay_ms:-1$(comma)muzzy_decay_ms:-1$(comma)lg_extent_max_active_fit:30)
ARGS ?=
CONF := src/latentflow/conf

.PHONY: install test test-fast lint format train bench bench-quick bench-sample bench-data \
	bench-ceiling docs \
	reproduce-cpu wheel-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: install
	$(PY) -m pytest -q --durations=25

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The documentation site into site/: strict (a broken link, a missing page, an API reference
# that does not import fail the build); the notebooks are executed (LATENTFLOW_DOCS_EXECUTE=false
# to skip that).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The wheel, installed into a clean venv outside the repository, trains/evaluates/samples.
wheel-check:
	bash scripts/wheel_check.sh

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts notebooks
	$(VENV)/bin/ruff format --check src tests benchmarks scripts notebooks

format: install
	$(PY) scripts/config_reference.py
	$(VENV)/bin/ruff format src tests benchmarks scripts notebooks
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts notebooks

train: install
	$(ALLOC_ENV) $(VENV)/bin/latentflow-train experiment=$(EXPERIMENT) $(ARGS)

bench: install
	$(PY) -m benchmarks.bench_train $(ARGS)
	$(PY) -m benchmarks.bench_data

bench-quick: install
	$(PY) -m benchmarks.bench_train --quick $(ARGS)

bench-sample: install
	$(PY) -m benchmarks.bench_sample $(ARGS)

bench-ceiling: install
	$(PY) -m benchmarks.bench_ceiling $(ARGS)

bench-data: install
	$(PY) -m benchmarks.bench_data

# Every CPU-scale recipe of docs/results.md, one after the other (hours; not in CI).
# every recipe under conf/experiment/cpu but the shared parts (files named _*.yaml)
CPU_RECIPES := $(foreach f,$(wildcard $(CONF)/experiment/cpu/*/*.yaml),$(if $(filter _%,$(notdir $(f))),,$(f)))
CPU_EXPERIMENTS := $(patsubst $(CONF)/experiment/%.yaml,%,$(sort $(CPU_RECIPES)))
reproduce-cpu: install
	for e in $(CPU_EXPERIMENTS); do \
	  $(ALLOC_ENV) $(VENV)/bin/latentflow-train experiment=$$e paths.log_dir=outputs/reproduce-cpu/$$e $(ARGS) || exit 1; \
	done
	$(PY) scripts/results_table.py outputs/reproduce-cpu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs multirun site
