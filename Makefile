# Set-up and everyday commands. The virtualenv is always ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
LOG_PATH ?= var/log/blueox

# The one command that installs the project into the venv, for every target:
# an editable install in pip's default mode, as `pip install -e .` does and
# tests/test_install.py checks (twistd then finds twisted/plugins/blueox_plugin.py
# in this checkout). No target may install it another way.
INSTALL := $(BIN)/pip install --quiet -e

.PHONY: dev test run bench clean

dev: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(INSTALL) '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(INSTALL) '.[test,bench]'
	touch $(BENCH_STAMP)

test: dev
	$(BIN)/trial tests

run: dev
	mkdir -p $(LOG_PATH)
	@echo "oxd writes events under $(LOG_PATH); for oxstore and the other tools: export BLUEOX_LOG_PATH=$(LOG_PATH)"
	$(BIN)/oxd --log-path=$(LOG_PATH)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/client_overhead.py
	$(BIN)/python bench/collector_throughput.py

clean:
	rm -rf $(VENV) _trial_temp* *.egg-info build twisted/plugins/dropin.cache
