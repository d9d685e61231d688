# nfc — every target sets itself up from nothing (fresh clone, root or not).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test test-long lint models demo bench clean

setup: $(STAMP)

# System tools: installed only where missing (apt needs root; otherwise say what is missing).
$(VENV)/.systools:
	@missing=""; \
	command -v iverilog >/dev/null || missing="$$missing iverilog"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	command -v make >/dev/null || missing="$$missing make"; \
	command -v perl >/dev/null || missing="$$missing perl"; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@test -d $(VENV) || python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	@touch $@

$(STAMP): pyproject.toml $(VENV)/.systools
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

test: setup
	$(PY) -m pytest -q -m "not slow"

test-long: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

models: setup
	$(PY) scripts/make_models.py build/models

bench: setup
	$(PY) scripts/bench.py --models build/models --big --out bench/results.json

demo: setup
	$(PY) scripts/make_models.py build/models --only scene_parsing
	$(PY) scripts/demo_photos.py build/demo
	$(VENV)/bin/nfc inspect build/models/scene_parsing.onnx
	$(VENV)/bin/nfc compile build/models/scene_parsing.onnx --target virtex6 -o build/demo --calibrate build/demo/calibrate.npy
	$(VENV)/bin/nfc simulate build/demo --model build/models/scene_parsing.onnx --input build/demo/astronaut.png --color yuv

clean:
	rm -rf build .pytest_cache
