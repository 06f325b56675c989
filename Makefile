# Two commands do all the set-up: `make test` and `make demo`. Both create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build that exists offline here. A GPU user installs a CUDA torch into .venv first
# (`$(BIN)/pip install torch`), and the check below leaves it alone.
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/demo.yaml
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install install-test test test-families lint demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -e '.[test]'
	@# the UI test looks at the Prefect UI in Debian's headless Chromium (skipped when it is missing)
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }; }; } || \
		echo "note: chromium not installed (apt-get install chromium): the UI test will be skipped"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

test: $(VENV)/.installed-test
	$(BIN)/pytest -q

# the model families kept out of the default suite for time (tests/families/test_families.py); CI runs them
test-families: $(VENV)/.installed-test
	MNAFT_FAMILIES=all $(BIN)/pytest -q -m slow tests/families/test_families.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: $(VENV)/.installed
	$(BIN)/mnaft run --config $(CONFIG)

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
