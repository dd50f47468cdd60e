# Set-up and everyday commands. The virtualenv is always ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOG_PATH ?= var/log/blueox

.PHONY: dev test run bench clean

dev: $(STAMP)

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

test: dev
	$(BIN)/trial tests

run: dev
	mkdir -p $(LOG_PATH)
	$(BIN)/oxd --log-path=$(LOG_PATH)

bench: dev
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/client_overhead.py
	$(BIN)/python bench/collector_throughput.py

clean:
	rm -rf $(VENV) _trial_temp* *.egg-info
