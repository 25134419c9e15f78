# Every target sets up what it needs by itself (a local .venv, a static busybox for offline images),
# so a fresh clone needs only Python 3.11+, make and Docker.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/example.yaml
EXAMPLE_IMAGE ?= busybox:stable

.PHONY: run test unit lint check busybox bench test-faults clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Offline images are built FROM scratch with the host's static busybox; install it when missing.
busybox:
	@if ! [ -x /bin/busybox ] && ! [ -x /usr/bin/busybox ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's busybox-static (offline images are built from it)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; \
	  else echo "warning: no static busybox; offline images need: apt-get install busybox-static" >&2; fi; \
	fi

# The agent in the foreground on the examples in config/ (Ctrl-C stops the agent, not the pods).
run: $(STAMP) busybox
	$(BIN)/python -m nodeagent.localimage $(EXAMPLE_IMAGE)
	$(BIN)/nodeagent --config $(CONFIG) plan
	$(BIN)/nodeagent --config $(CONFIG) --log-format console run

test: $(STAMP) busybox
	$(BIN)/pytest -q

# The fault suite: SIGKILL mid-sync, engine restarts (an engine of its own), broken sources, crash loops,
# an unusable stateDir, and the manifest loader fuzzed with 10,000 generated documents per property.
test-faults: $(STAMP) busybox
	FUZZ_EXAMPLES=10000 $(BIN)/pytest -q -p no:cacheprovider tests/faults

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check nodeagent tests benchmarks
	$(BIN)/ruff format --check nodeagent tests benchmarks
	$(BIN)/mypy --strict

check: lint test

# Speed and cost, each next to a baseline measured in the same run (README: Benchmarks).
bench: $(STAMP) busybox
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .state
