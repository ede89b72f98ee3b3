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

.PHONY: setup train test test-slow bench-peers

$(VENV)/installed.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

setup: $(VENV)/installed.stamp

train: setup
	$(PY) -m experiments.train --dataset=ml-1m --model=sasrec --attention=linrec --workdir=$(WORKDIR)

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench-peers: setup
	$(PY) -m experiments.benchmark_peers --peers_venv=$(PEERS_VENV) --peers_python=$(PYTHON) $(BENCH_PEERS_FLAGS)
