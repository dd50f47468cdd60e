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

# Packages (tests/test_packaging.py builds both): `make dist` writes the
# sdist and the wheel to $(DIST); `make deb` writes
# $(DIST)/blueox_<version>_<arch>.deb, a virtualenv in /opt/blueox for the
# system's $(DEB_PYTHON) with oxd.service, built by packaging/build_deb.py
# with Debian's tools (apt-get installs those missing) and checked by
# lintian. DEB_FLAGS passes more options to it (--level=1 builds faster).
DIST ?= dist
DEB_PYTHON ?= /usr/bin/python3
DEB_COMPRESS ?= xz
DEB_FLAGS ?=
# command:Debian package, for each tool make deb runs.
DEB_TOOLS := dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev strip:binutils help2man:help2man lintian:lintian \
	$(DEB_PYTHON):python3

.PHONY: dev test run bench clean dist deb deb-tools browser

dev: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(INSTALL) '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(INSTALL) '.[test,bench]'
	touch $(BENCH_STAMP)

# The dashboard's browser test drives Debian's Chromium (with Playwright from
# the test extra); apt-get installs it when it is missing.
browser:
	@command -v chromium >/dev/null || { \
		echo "the dashboard test needs Debian's chromium; installing with apt-get"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium fonts-dejavu-core; }

test: dev browser
	$(BIN)/trial -j2 tests

run: dev
	mkdir -p $(LOG_PATH)
	@echo "oxd writes events under $(LOG_PATH); for oxstore and the other tools: export BLUEOX_LOG_PATH=$(LOG_PATH)"
	$(BIN)/oxd --log-path=$(LOG_PATH)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/client_overhead.py
	$(BIN)/python bench/collector_throughput.py

dist: dev
	$(BIN)/python -m build --no-isolation --outdir $(DIST) .

deb-tools:
	@missing=; for tool in $(DEB_TOOLS); do \
		command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deb needs:$$missing; installing with apt-get"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

deb: dev deb-tools
	$(BIN)/python packaging/build_deb.py --python=$(DEB_PYTHON) --output=$(DIST) \
		--compress=$(DEB_COMPRESS) --lintian $(DEB_FLAGS)

clean:
	rm -rf $(VENV) _trial_temp* *.egg-info build dist twisted/plugins/dropin.cache
