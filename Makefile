# The two commands of the README:
#   make demo   ship the bundled sample of real Clawdstrike audit events through the spool to local files
#               and to the Splunk HEC and Elasticsearch mocks (in-process, loopback)
#   make test   run the whole test suite (lint, unit and integration tests)
# Both create .venv on first use; nothing else needs to be installed.
# The interpreter of the venv: the distribution's CPython 3.11 where there is one that can make a venv
# (Debian's /usr/bin/python3.11: libpython linked into the executable, built with profile-guided and
# link-time optimization), else python3 on the PATH. A source build with a shared libpython and no
# --enable-optimizations/--with-lto (pyenv's default, this VM's python3) runs the agent with ~10% more
# CPU per event: docs/outputs.md §9. `make PYTHON=python3 ...` picks the PATH's.
DISTRO_PYTHON := /usr/bin/python3.11
PYTHON ?= $(shell $(DISTRO_PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 && echo $(DISTRO_PYTHON) || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-delivery clean

$(STAMP): requirements.txt requirements-dev.txt setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clawd-agent demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-delivery: $(STAMP)
	$(BIN)/python bench/delivery.py

clean:
	rm -rf $(VENV) demo-state
