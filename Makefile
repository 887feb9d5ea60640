# siamese_lit — every target uses .venv and installs it first when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where MNIST is read from; ../shared/data on the project's machines, data/ (downloaded) elsewhere.
export SIAMESE_LIT_DATA_DIR ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(CURDIR)/data)

.PHONY: install browser fonts demo train test test-fast bench bench-quick eval tensorboard summary lint clean slurm

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,sweep,demo]'
	touch $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; it cannot download a browser here)
browser:
	@if [ -n "$${SIAMESE_LIT_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
	  echo "browser: $${SIAMESE_LIT_CHROMIUM:-$$(command -v chromium || command -v chromium-browser)}"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && chromium --version; \
	else \
	  echo "make browser: no Chromium found; install Debian's chromium as root (apt-get install chromium)," \
	    "or set SIAMESE_LIT_CHROMIUM=<path of a Chromium>" >&2; exit 1; \
	fi

# Debian's font packages: the letters and symbols of the non-digit set (siamese_lit/data/nondigits.py)
FONT_PACKAGES := fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf
fonts:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(FONT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	  echo "fonts: $$(find /usr/share/fonts/truetype /usr/share/fonts/opentype \( -name '*.ttf' -o -name '*.otf' \) 2>/dev/null | wc -l) font files"; \
	elif [ -n "$$(find /usr/share/fonts/truetype /usr/share/fonts/opentype \( -name '*.ttf' -o -name '*.otf' \) 2>/dev/null | head -1)" ]; then \
	  echo "fonts: not root, using the font files already under /usr/share/fonts"; \
	else \
	  echo "error: make fonts: no font files under /usr/share/fonts and no apt as root to install them: run it as root, or install $(FONT_PACKAGES)" >&2; exit 1; \
	fi

demo: $(STAMP)  ## make demo CKPT=<siamese .ckpt> [INDEX=<index file>]: the drawing page on localhost
	$(PY) -m siamese_lit.demo ckpt_path=$(CKPT) $(if $(INDEX),index_path=$(INDEX)) $(ARGS)

train: $(STAMP)  ## the headline experiment
	$(PY) -m siamese_lit.train +experiment=siamese $(ARGS)

# make test: the whole suite (tests/unit and tests/e2e: real CLI subprocesses, training runs, the
# browser and SLURM tests), what .ci/run calls. make test-fast: the unit tier only (tests/unit, in-process,
# no training run), for the inner loop; ARGS adds pytest options to either (ARGS="-k name").
# SIAMESE_LIT_NO_BF16=1 make test: the suite as on a CPU without bfloat16 kernels (utils/precision.py).
test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit -m "not e2e and not slurm and not browser and not slow" $(ARGS)

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

bench-quick: $(STAMP)
	$(PY) -m bench --quick $(ARGS)

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
