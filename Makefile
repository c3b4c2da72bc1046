# SPOT end-device firmware: set-up, build, tests, benchmarks and the demo.
# Every target does its own set-up: a virtualenv with the pinned packages,
# umqtt.simple fetched from the registry, and a check that Mosquitto is there.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)
UMQTT  := build/deps/umqtt/simple.py
PYTEST_ARGS ?=

.PHONY: all setup build test bench demo check-mosquitto mp32 clean

all: test

$(STAMP): requirements.txt pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

$(UMQTT): host_tools/fetch_umqtt.py | $(STAMP)
	$(PY) -m host_tools.fetch_umqtt

check-mosquitto:
	@PATH="$$PATH:/usr/sbin:/usr/local/sbin" command -v mosquitto >/dev/null || \
	  { echo "Mosquitto is missing: install it (Debian/Ubuntu: sudo apt-get install mosquitto)"; exit 1; }

setup: $(STAMP) $(UMQTT) check-mosquitto

build: setup
	$(PY) -m host_tools build

# A 32-bit MicroPython (the WebAssembly port from npm, under node) into build/mp32.
mp32: | $(STAMP)
	@$(PY) tests/mp32_runner.py

test: build mp32
	$(PY) -m pytest tests $(PYTEST_ARGS)
	$(PY) -m pytest tests/hil --board virtual:rp2040 $(PYTEST_ARGS)

bench: build
	$(PY) -m host_tools bench

demo: build
	$(PY) -m host_tools demo

clean:
	rm -rf build .pytest_cache
