# `make demo` and `make test` are all a fresh machine needs: each creates .venv and installs from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.installed-demo-stamp

.PHONY: demo test test-fast bench lint clean notebooks

# pip -qq: errors only (setuptools otherwise prints a screen of build-backend notices on every install)
$(STAMP): pyproject.toml
	@echo "recsys: installing into $(VENV) (first time: about 4 minutes, torch, open_clip, FAISS, the test tools)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --quiet -e ".[api,dev]"
	touch $(STAMP) $(DEMO_STAMP)

# the demo needs the API (and ONNX Runtime: 4.7x faster image features on a CPU) but none of the test, benchmark
# and notebook tools: a leaner, faster first install
$(DEMO_STAMP): pyproject.toml
	@echo "recsys: installing into $(VENV) (first time: about 4 minutes, torch, open_clip, FAISS, the API)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --quiet -e ".[api,onnx]"
	touch $(DEMO_STAMP)

PORT ?= 8000

demo: $(DEMO_STAMP)
	$(BIN)/recsys demo --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

notebooks: $(STAMP)
	$(BIN)/python notebooks/run_all.py

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check recsys tests bench migrations
	$(BIN)/mypy recsys

clean:
	rm -rf $(VENV) .recsys .pytest_cache .mypy_cache .ruff_cache
