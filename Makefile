# adaptive_rnn — the two commands of the README, and the targets they are built from.
#   make course   a virtual environment, every notebook executed (quick settings), the site in _site/
#   make test     the library in sync with the notebooks, clean notebooks, nbdev_test, pytest
SHELL := /bin/bash
PYTHON ?= python3
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MPLBACKEND := Agg

.PHONY: course test venv export check-sync check-clean nbtest pytest site execute debs bench readme clean

venv: $(STAMP)
$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 numpy 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(BIN)/pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import nbdev, execnb, adaptive_rnn"
	touch $(STAMP)

# The library is generated from nbs/: exporting again must change nothing.
check-sync: $(STAMP)
	@before=$$(git status --porcelain -- adaptive_rnn); \
	$(BIN)/nbdev_export; \
	after=$$(git status --porcelain -- adaptive_rnn); \
	if [ "$$before" != "$$after" ]; then echo "adaptive_rnn/ is out of sync with nbs/: run nbdev_export and commit"; git status --short -- adaptive_rnn; exit 1; fi; \
	echo "export: in sync"

# Notebooks are committed clean: cleaning again must change nothing.
check-clean: $(STAMP)
	@before=$$(git status --porcelain -- nbs); \
	$(BIN)/nbdev_clean; \
	after=$$(git status --porcelain -- nbs); \
	if [ "$$before" != "$$after" ]; then echo "notebooks are not clean: run nbdev_clean and commit"; git status --short -- nbs; exit 1; fi; \
	echo "notebooks: clean"

nbtest: $(STAMP)
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: $(STAMP)
	$(BIN)/python -m pytest tests/ -q -p no:cacheprovider

test: $(STAMP) check-sync check-clean nbtest pytest

# Debian packages for the offline site preview (MathJax) and its browser check (Chromium).
debs:
	@if [ ! -d /usr/share/javascript/mathjax ] || ! command -v chromium >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libjs-mathjax chromium >/dev/null; \
	  else echo "install Debian's libjs-mathjax and chromium (as root: apt-get install libjs-mathjax chromium)"; fi; \
	fi

execute: $(STAMP)
	$(BIN)/python tools/run_nbs.py --dest _exec nbs/*.ipynb

site: $(STAMP) debs
	@if command -v quarto >/dev/null; then $(BIN)/nbdev_docs; else $(BIN)/python tools/site.py --src _exec --dest _site; fi

course: $(STAMP) debs execute site
	@echo "site: _site/index.html"

bench: $(STAMP)
	$(BIN)/python -m adaptive_rnn.bench all

# README.md is generated from nbs/index.ipynb (run after executing the index notebook).
readme: $(STAMP)
	$(BIN)/python tools/readme.py

clean:
	rm -rf _site _proc _exec _docs
