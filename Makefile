# siamese_lit — every target uses .venv and installs it first when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where MNIST is read from; ../shared/data on the project's machines, data/ (downloaded) elsewhere.
export SIAMESE_LIT_DATA_DIR ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(CURDIR)/data)

.PHONY: install train test bench bench-quick eval tensorboard summary lint clean slurm

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,sweep]'
	touch $(STAMP)

train: $(STAMP)  ## the headline experiment
	$(PY) -m siamese_lit.train +experiment=siamese $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

bench: $(STAMP)
	$(PY) -m siamese_lit.bench $(ARGS)

bench-quick: $(STAMP)
	$(PY) -m siamese_lit.bench --quick $(ARGS)

eval: $(STAMP)  ## make eval CKPT=<siamese .ckpt> [CLASSIFIER=<classifier .ckpt>]
	$(PY) -m siamese_lit.evaluate ckpt_path=$(CKPT) $(if $(CLASSIFIER),classifier_ckpt_path=$(CLASSIFIER)) $(ARGS)

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir outputs

summary: $(STAMP)  ## make summary DIR=outputs/train/multiruns/<timestamp>
	$(PY) -m siamese_lit.summarize $(DIR)

slurm:  ## a one-node SLURM cluster of this machine (as root; docs/slurm.md): make slurm [ARGS=stop|status]
	bash scripts/slurm_local.sh $(or $(ARGS),start)

lint: $(STAMP)
	$(VENV)/bin/ruff check siamese_lit tests
	$(VENV)/bin/ruff format --check siamese_lit tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
