VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-random lint bench reliability soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run dashboard/app.py

test: $(STAMP)
	$(PY) -m pytest -q

# The suite in a random order (pytest-randomly), so that no test leans on another's
# leftovers. SEED=1234 repeats the order a run printed (SEED=last: the previous run's);
# the default draws a new one.
SEED ?= default
test-random: $(STAMP)
	$(PY) -m pytest -q -p randomly --randomly-seed=$(SEED)

lint: $(STAMP)
	$(VENV)/bin/ruff check engine dashboard tests
	$(VENV)/bin/mypy

bench: $(STAMP)
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
