# filmflow: two commands do all the set-up on a fresh Debian machine.
#   make demo   installs what is needed and migrates sample_scans/ into out/archive
#   make test   installs the same plus test needs and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test venv system-deps system-deps-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

system-deps:
	bash scripts/install-system-deps.sh run

system-deps-test:
	bash scripts/install-system-deps.sh test

demo: system-deps venv
	$(VENV)/bin/filmflow migrate sample_scans --manifest sample_scans/manifest.csv \
	    --config sample_scans/filmflow.toml \
	    --archive out/archive --report out/report.csv --work-dir out/work
	@echo "DICOM files: out/archive/   report: out/report.csv"

test: system-deps-test venv
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf out .filmflow test-artifacts
