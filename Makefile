# Two entry points for a newcomer: `make run` (dashboard on the bundled sample) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
# Empty: app.py picks the address (HMM_STUDIO_HOST/PORT, GRADIO_SERVER_NAME/PORT, else 127.0.0.1:7860).
HOST ?=
PORT ?=

.PHONY: run test test-fast lint setup system-deps bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.installed-*; touch $(STAMP)

system-deps:
	bash scripts/install_system_deps.sh

setup: system-deps $(STAMP)

run: setup
	$(BIN)/python app.py $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

# What CI runs (.ci/run): lint, the import contract (pyproject.toml), then every test.
test: setup lint
	$(BIN)/python -m pytest -q

# The inner loop: no servers, browsers, second processes or corpus generation (see pytest.ini).
test-fast: setup lint
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

bench: setup
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .grimp_cache .import_linter_cache
