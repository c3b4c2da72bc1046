# SPOT end-device firmware: set-up, build, tests, benchmarks and the demo.
# Every target does its own set-up: a virtualenv with the pinned packages,
# umqtt.simple fetched from the registry, and a check that Mosquitto is there.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)
UMQTT  := build/deps/umqtt/simple.py
PYTEST_ARGS ?=

.PHONY: all setup build test bench demo check-mosquitto check-chromium mp32 clean

all: test

$(STAMP): requirements.txt pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	$(PY) -m host_tools.paths
	@rm -f $(VENV)/.installed-* && touch $@

$(UMQTT): host_tools/board/fetch_umqtt.py | $(STAMP)
	$(PY) -m host_tools.board.fetch_umqtt

check-mosquitto:
	@PATH="$$PATH:/usr/sbin:/usr/local/sbin" command -v mosquitto >/dev/null || \
	  { echo "Mosquitto is missing: install it (Debian/Ubuntu: sudo apt-get install mosquitto)"; exit 1; }

# The dashboard's test drives a real browser: Debian's chromium (Playwright's own
# browser download needs the internet). Installed here when we are root.
check-chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { echo "installing chromium (for the dashboard's browser test)"; \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)); }; } || true
	@command -v chromium >/dev/null || \
	  echo "chromium is missing: the dashboard's browser test will be skipped (Debian/Ubuntu: sudo apt-get install chromium)"

setup: $(STAMP) $(UMQTT) check-mosquitto check-chromium

build: setup
	$(PY) -m host_tools build

# A 32-bit MicroPython (the WebAssembly port from npm, under node) into build/mp32.
mp32: | $(STAMP)
	@$(PY) tests/mp32_runner.py

test: build mp32
	$(PY) -m pytest tests -n 2 $(PYTEST_ARGS)
	$(PY) -m pytest tests/hil --board virtual:rp2040 $(PYTEST_ARGS)

bench: build
	$(PY) -m host_tools bench

demo: build
	$(PY) -m host_tools demo

clean:
	rm -rf build .pytest_cache
