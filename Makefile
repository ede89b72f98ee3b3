# Two commands do everything on a fresh clone:
#   make train   sets up .venv, prepares ML-1M and trains LinRec-SASRec, printing test metrics
#   make test    sets up .venv and runs the test suite
#   make bench-peers   times linrec_jax beside RecBole 1.1.1 (PyTorch), which
#                it installs into a separate .venv-peers; BENCH_PEERS_FLAGS
#                passes flags, e.g. BENCH_PEERS_FLAGS=--cells=200x256
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LINREC_DATA_DIR ?= ../shared/data
export LINREC_DATA_DIR
WORKDIR ?= runs/ml-1m_sasrec_linrec
PEERS_VENV ?= .venv-peers
BENCH_PEERS_FLAGS ?=
# pytest workers: the suite's tests are independent (each writes under its
# own tmp_path), and two workers use both cores of a 2-core machine.
TEST_WORKERS ?= 2

.PHONY: setup setup-search train test test-slow bench-peers format

# The pinned dependencies, then this project itself (editable: the commands
# linrec-train, linrec-prepare, linrec-recommend, linrec-benchmark and
# linrec-search, and `import linrec_jax` from any directory).
$(VENV)/installed.stamp: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e .
	touch $@

# Optuna, for the hyperparameter search and its test.
$(VENV)/search.stamp: $(VENV)/installed.stamp requirements-search.txt
	$(PY) -m pip install -q -r requirements-search.txt
	touch $@

setup: $(VENV)/installed.stamp

setup-search: $(VENV)/search.stamp

train: setup
	$(VENV)/bin/linrec-train --dataset=ml-1m --model=sasrec --attention=linrec --workdir=$(WORKDIR)

# --durations: the ten slowest tests close the report, to keep the default
# run within its ten minutes on 2 cores.
test: setup-search
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=10

test-slow: setup-search
	$(PY) -m pytest -q -m slow -n $(TEST_WORKERS) --dist worksteal

bench-peers: setup
	$(PY) -m experiments.benchmark_peers --peers_venv=$(PEERS_VENV) --peers_python=$(PYTHON) $(BENCH_PEERS_FLAGS)

# Formats the Python files in place (pyink, configured in pyproject.toml).
format: setup
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pyink .
