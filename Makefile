# errorflow — the targets the README names. Everything installs into .venv; the Kafka
# jars go to ~/.cache/errorflow (ERRORFLOW_CACHE_DIR), never into the repository.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup tools test unit lint format demo kafka-stop clean bench-sdk bench-sink bench-worker bench-breaker

setup: $(VENV)/.installed tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[pipeline,test,bench]'
	touch $@

tools:
	@command -v kcat >/dev/null || { $(SUDO) apt-get install -y -q kcat || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q kcat; }; }
	@command -v chromium >/dev/null || { $(SUDO) apt-get install -y -q chromium || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }; }
	$(BIN)/errorflow kafka fetch

test: setup
	$(BIN)/pytest

unit: $(VENV)/.installed
	$(BIN)/pytest tests/unit

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: setup
	$(BIN)/errorflow kafka start
	$(BIN)/errorflow topics create
	$(BIN)/errorflow demo

bench-sdk: setup
	$(BIN)/errorflow kafka start
	$(BIN)/errorflow topics create
	$(BIN)/python -m benchmarks.sdk_overhead --kafka 127.0.0.1:9092

bench-sink: setup
	$(BIN)/errorflow kafka start
	$(BIN)/errorflow topics create
	$(BIN)/python -m benchmarks.sink_throughput --kafka 127.0.0.1:9092

bench-worker: setup
	$(BIN)/errorflow kafka start
	$(BIN)/errorflow topics create
	$(BIN)/python -m benchmarks.worker_throughput --kafka 127.0.0.1:9092

bench-breaker: setup
	$(BIN)/errorflow kafka start
	$(BIN)/errorflow topics create
	$(BIN)/python -m benchmarks.breaker_latency --kafka 127.0.0.1:9092

kafka-stop:
	$(BIN)/errorflow kafka stop

clean:
	rm -rf $(VENV) .errorflow .pytest_cache .mypy_cache .ruff_cache
