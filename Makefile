VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run cluster test test-random system-packages lint bench reliability soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run dashboard/app.py

# Several machines on this one: a throwaway PostgreSQL, three workers, the API and the
# dashboard, on 127.0.0.1; Ctrl-C stops them all (README: Running on several machines).
cluster: $(STAMP) system-packages
	$(VENV)/bin/recon cluster

test: $(STAMP) system-packages
	$(PY) -m pytest -q

# The suite in a random order (pytest-randomly), so that no test leans on another's
# leftovers. SEED=1234 repeats the order a run printed (SEED=last: the previous run's);
# the default draws a new one.
SEED ?= default
test-random: $(STAMP) system-packages
	$(PY) -m pytest -q -p randomly --randomly-seed=$(SEED)

# Debian packages the tests use: Chromium for the end-to-end browser test (never a
# downloaded browser), PostgreSQL for the shared-database tests. Installed when missing.
system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "the tests need Debian's$$missing: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	  echo "installing Debian's$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check engine dashboard tests
	$(VENV)/bin/mypy

bench: $(STAMP) system-packages
	$(VENV)/bin/recon bench --suite all

# RELIABILITY.md from a run of the reliability suite, written whether it passed or not
# (the file says which, and `make test` refuses one from a run that failed); make
# exits with the suite's status. test_report.py checks the file being replaced: left out.
RELIABILITY_RUN = $(PY) -m pytest -q tests/reliability --deselect tests/reliability/test_report.py

reliability: $(STAMP)
	rm -f test-output/reliability.json
	$(RELIABILITY_RUN); status=$$?; $(PY) -m tests.reliability.report && exit $$status

soak: $(STAMP)
	rm -f test-output/reliability.json
	SOAK=1 $(RELIABILITY_RUN); status=$$?; $(PY) -m tests.reliability.report && exit $$status

clean:
	rm -rf $(VENV) data/*.db data/*.db-*
