# `make demo` and `make test` are all a fresh machine needs: each creates .venv and installs from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.installed-demo-stamp
TEST_EXTRAS := ".[api,dev]"
DEMO_EXTRAS := ".[api,onnx]"
NB_EXTRAS   := ".[api,onnx,notebooks]"

.PHONY: demo demo-port test test-fast bench lint clean notebooks lab

# pip -qq: errors only (setuptools otherwise prints a screen of build-backend notices on every install); being that
# quiet for minutes, a line every 20 s says it is still at work (in a terminal and in a CI log alike)
define pip_install
	@start=$$(date +%s); ( while sleep 20; do echo "recsys: still installing ($$(( $$(date +%s) - start )) s)"; done ) & \
	ticker=$$!; $(BIN)/python -m pip install --quiet --quiet $(1); status=$$?; kill $$ticker 2>/dev/null; \
	[ $$status -eq 0 ] && echo "recsys: installed in $$(( $$(date +%s) - start )) s"; exit $$status
endef

$(STAMP): pyproject.toml
	@echo "recsys: installing into $(VENV) (first time: about 2-4 minutes, torch, open_clip, FAISS, the test tools)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip
	$(call pip_install,-e $(TEST_EXTRAS))
	touch $(STAMP) $(DEMO_STAMP)

# the demo needs the API (and ONNX Runtime: 4.7x faster image features on a CPU) but none of the test, benchmark
# and notebook tools: a leaner, faster first install
$(DEMO_STAMP): pyproject.toml
	@echo "recsys: installing into $(VENV) (first time: about 2-4 minutes, torch, open_clip, FAISS, the API)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip
	$(call pip_install,-e $(DEMO_EXTRAS))
	touch $(DEMO_STAMP)

PORT ?= 8000

# a busy port is reported before minutes of install, not after; the suggestion is the next port, not a fixed one
# (with 8001 busy, "make demo PORT=8001" was suggested back)
demo-port:
	@$(PYTHON) -c "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
	s.bind(('127.0.0.1', $(PORT)))" 2>/dev/null || { echo "recsys: port $(PORT) is busy (a server already running?): \
	stop it, or run make demo PORT=$$(( $(PORT) + 1 ))"; exit 2; }

demo: demo-port $(DEMO_STAMP)
	$(BIN)/recsys demo --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# the notebooks need jupyter, matplotlib and scikit-learn beside the demo's install, not the test tools
NB_STAMP := $(VENV)/.installed-notebooks-stamp
$(NB_STAMP): pyproject.toml $(DEMO_STAMP)
	@echo "recsys: installing the notebook tools into $(VENV) (JupyterLab, matplotlib, scikit-learn: about a minute)"
	$(call pip_install,-e $(NB_EXTRAS))
	touch $(NB_STAMP)

notebooks: $(NB_STAMP)
	$(BIN)/python notebooks/run_all.py

# on the store `make demo` built (or RECSYS_HOME's), as `make notebooks`: the notebooks' own default is a small demo
lab: $(NB_STAMP)
	$(BIN)/python notebooks/run_all.py --lab

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check recsys tests bench migrations
	$(BIN)/mypy recsys

# the install and the tools' caches; never the store (./.recsys holds your imports, likes and builds)
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
