# Two commands do everything on a fresh clone:
#   make train   sets up .venv, prepares ML-1M and trains LinRec-SASRec, printing test metrics
#   make test    sets up .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LINREC_DATA_DIR ?= ../shared/data
export LINREC_DATA_DIR
WORKDIR ?= runs/ml-1m_sasrec_linrec

.PHONY: setup train test test-slow

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
