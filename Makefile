# otcls — every entry point a user needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: help install test demo bench bench-float32 data-fmnist clean
.DEFAULT_GOAL := help

help:  ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# Re-runs only when the dependency files change, so `make install` is quick when nothing did.
# Every extra (the tests cover every area) at the exact versions of constraints.txt; torch first, on its own,
# so the resolver never weighs another build of it.
CONSTRAINTS := constraints.txt
$(VENV)/.install-stamp: setup.cfg pyproject.toml setup.py $(CONSTRAINTS) $(wildcard src/otcls/ot/native/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) torch torchvision
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[all,test]'
	touch $@

install: $(VENV)/.install-stamp  ## create .venv and install otcls (editable) with every extra at the versions of constraints.txt

data-fmnist:  ## make sure the offline Fashion-MNIST files exist (Debian package dataset-fashion-mnist)
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' or set data.root" >&2; exit 1; fi; \
	fi

test: install data-fmnist  ## run the test suite
	$(PY) -m pytest -q

bench: install  ## time otcls solvers against POT, OTT-JAX, cvxpy, k-means-constrained -> results/bench/solvers.{md,json}
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[bench]'
	$(PY) experiments/bench/bench_solvers.py

bench-float32: install  ## float32 accuracy of the solvers on the bench problems -> results/bench/float32_accuracy.md
	$(PY) experiments/bench/float32_accuracy.py

clean:  ## remove run outputs (keeps .venv)
	rm -rf runs results lightning_logs wandb .pytest_cache

# Each product area adds its targets in make/<area>.mk.
-include make/*.mk
