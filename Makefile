# Two commands do everything on a fresh clone:
#   make train   sets up .venv, prepares ML-1M and trains LinRec-SASRec, printing test metrics
#   make test    sets up .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LINREC_DATA_DIR ?= ../shared/data
export LINREC_DATA_DIR
WORKDIR ?= runs/ml-1m_sasrec_linrec

.PHONY: setup setup-search train test test-slow

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

test: setup-search
	$(PY) -m pytest -q

test-slow: setup-search
	$(PY) -m pytest -q -m slow
