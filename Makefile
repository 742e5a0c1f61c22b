# Two commands on a fresh machine: `make demo` (the main job end to end) and
# `make test` (the whole suite). Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch where there is no GPU (pip finds it on the machine's
# wheel path or on PyPI); set TORCH_SPEC to pin another build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: setup
	RAY_AUTH_MODE=token $(VENV)/bin/logad demo

test: setup
	RAY_AUTH_MODE=token $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) demo-output .pytest_cache
