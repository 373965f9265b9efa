# Two commands set up everything on a fresh machine with python3 and make:
#   make demo   creates .venv, installs sharebatch with the demo extra, runs the demo
#   make test   creates .venv, installs dev tools, runs lint, type check and tests
#   make test-clock  the tests again on a clock shifted across a new year (needs faketime)
# Every install goes through constraints.txt so that pip resolves the same versions everywhere
# (an unpinned aioboto3 + moto install once resolved to 2018 releases).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt

.PHONY: demo test test-clock lint typecheck pytest bench lock clean fuzz-linescan

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# setup.py builds the optional compiled line scanner of `usage` (a C compiler and Python's
# headers; without them the install goes on and the Python reads every line): an edit of its
# source rebuilds it.
BUILT := pyproject.toml setup.py sharebatch/receipts/_linescan.c $(CONSTRAINTS)

$(VENV)/.demo-installed: $(BIN)/python $(BUILT)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: $(BIN)/python $(BUILT)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/sharebatch demo

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check sharebatch tests bench tools
	$(BIN)/ruff format --check sharebatch tests bench tools

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# One pytest process per core (pytest-xdist).
XDIST ?= -n auto
pytest: $(VENV)/.dev-installed
	$(BIN)/pytest $(XDIST)

test: lint typecheck pytest

# The whole suite again on a shifted clock (libfaketime, Debian package `faketime`), starting
# minutes before a new year so the run crosses it: no test may depend on the day it runs.
# tools/clock_pass.py runs it in parts on one continuous faked clock, and runs again a part
# that libfaketime itself killed (it once segfaulted a moto server thread); failing tests fail.
# Tests marked own_clock are left out: they run sharebatch under a frozen clock of their own
# (faketime -f), which no shift of the outer clock reaches.
CLOCK ?= 2027-12-31 23:57:00
test-clock: $(VENV)/.dev-installed
	@command -v faketime >/dev/null 2>&1 || { echo "make test-clock needs faketime: apt-get install faketime" >&2; exit 2; }
	$(BIN)/python tools/clock_pass.py '$(CLOCK)' $(BIN)/pytest -p no:cacheprovider -m 'not own_clock'

# The compiled line scanner of `usage` (sharebatch/receipts/_linescan.c, which reads what
# outsiders write into access logs) fuzzed against the Python under AddressSanitizer and UBSan
# (~5 minutes; needs gcc's libasan and libubsan). Not part of `make test`.
FUZZ ?= 20000
fuzz-linescan: $(VENV)/.dev-installed
	$(BIN)/python tools/asan_linescan.py $(BIN)/python $(FUZZ)

# Presigning throughput: sharebatch's signer vs botocore vs a bare hash floor (~1 minute).
# Speed and memory claims come from here (ratios measured side by side in one run), never
# from timed assertions in tests. Then the run benchmarks (~15 minutes, with the per-link
# ratio of issue 17: 5 runs of 100,000 and 5 of 1,000,000 synthetic links) and notify at
# concurrency 1 vs 8 against a slow SMTP server (~10 minutes) on 2 cores, and reading 100k and
# 1M access log lines for `usage`, the whole of it over two traffic models and again without its
# compiled scan, beside the signer as a yardstick (~10 minutes), hostile quote floods 16 vs 64 KiB (seconds),
# CloudFront signing by key kind (seconds), an S3 Inventory source of 1M objects vs the
# synthetic lister (~6 minutes), two shard processes plus their merge vs one process over that
# inventory (issue 18, ~6 minutes); results: docs/performance.md.
# First the package's bytecode, as an installed wheel has it: this editable install otherwise
# compiles every module at each start where PYTHONDONTWRITEBYTECODE is set (~0.2 s of CPU a
# process, paid twice on the sharded path of bench_shards).
# Every bench runs even when one before it misses its target (each prints its own verdict);
# make bench exits 1 at the end if any missed.
BENCHES := signing run notify usage floods forged cfsign scan inventory shards
bench: $(VENV)/.dev-installed
	$(BIN)/python -m compileall -q sharebatch
	@missed=""; for name in $(BENCHES); do \
		$(BIN)/python bench/bench_$$name.py || missed="$$missed $$name"; \
	done; \
	if [ -n "$$missed" ]; then echo "make bench: missed a target:$$missed"; exit 1; fi

# Re-resolve the pinned set from pyproject.toml (run by a developer, never by CI).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^sharebatch' > $(CONSTRAINTS)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
