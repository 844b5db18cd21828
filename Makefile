# Every target installs what it needs into .venv first.
PYTHON ?= python3
# pytest processes of `make test`; each starts its own embedded PostgreSQL (or shares
# DATABASE_URL's server, where every test still gets its own database).
TEST_WORKERS ?= 2
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv demo test lint format unit bench faults schema db-stop clean test-matrix bench-fleet bench-archive \
	bench-scale bench-soak

help:
	@echo "make demo    run the work-order pipeline end to end on the embedded PostgreSQL"
	@echo "make test    lint, type-check, validate pipelines and run the test suite"
	@echo "make lint    ruff, mypy and import contracts only"
	@echo "make unit    the unit tests only (no database)"
	@echo "make bench   queue and runtime benchmarks (ratios against plain SQL)"
	@echo "make bench-fleet  what 20 idle workers on 50 steps cost PostgreSQL"
	@echo "make bench-archive  dashboard pages, trace, status, dlq list over 10 million archived messages"
	@echo "make bench-scale  read and hand-off at 10k to 10M waiting messages (about 45 minutes)"
	@echo "make bench-soak   1,000 hand-offs/s for 10 minutes: table bloat and worker memory"
	@echo "make faults  the large fault-injection suite"
	@echo "make test-matrix  queue, compiler and runtime suites on PostgreSQL 15, 16 and 18"
	@echo "make schema  regenerate schemas/pipeline.schema.json"

# setuptools warns about every editable install in a banner that hides what make does: not here.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check orchestrator tests bench pipelines
	$(BIN)/ruff format --check orchestrator tests bench pipelines
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format orchestrator tests bench pipelines
	$(BIN)/ruff check --fix orchestrator tests bench pipelines

test: lint
	$(BIN)/orchestrator validate --import-handlers pipelines
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
		echo "*** no chromium/chromium-driver: the browser tests will be SKIPPED (apt-get install -y chromium chromium-driver) ***"
	$(BIN)/pytest -q -m "not faults" -n $(TEST_WORKERS) --dist loadfile

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench

bench-fleet: $(STAMP)
	$(BIN)/python -m bench.fleet

# Builds a 10,000,000-message archive (about 5 minutes and 7.2 GiB on 2 cores), then times every
# dashboard page and trace/status/dlq list; ARCHIVE_ARGS=--reuse times the last build again.
bench-archive: $(STAMP)
	$(BIN)/python -m bench.archive_bench $(ARCHIVE_ARGS)
# Deep backlogs: SCALE_ARGS=--sizes 10000,100000 for a shorter run.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

# SOAK_ARGS="--minutes 30" for the memory soak of issue 14.
bench-soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

test-matrix: $(STAMP)
	$(BIN)/python -m tests.matrix

faults: $(STAMP)
	$(BIN)/pytest -q -m faults tests/faults

schema: $(STAMP)
	$(BIN)/orchestrator schema > schemas/pipeline.schema.json

demo: $(STAMP)
	$(BIN)/python -m pipelines.demo

db-stop: $(STAMP)
	$(BIN)/orchestrator db stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
