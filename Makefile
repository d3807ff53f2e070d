# crossdeploy — every target installs what it needs first; there is no other set-up step.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ORT_DISABLE_TELEMETRY := 1

.PHONY: install pipeline up test test-all clean

install: $(STAMP)

# torch first and exactly (a local CPU wheel; any other spec pulls CUDA), then everything else pinned by
# constraints.txt (which pins torch==2.13.0 too), then onnx2torch without its torchvision dependency.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/pip install -q -c constraints.txt --no-deps onnx2torch
	touch $(STAMP)

pipeline: install
	$(BIN)/crossdeploy pipeline

# The whole pathway: train, export, parity. (The gateway that serves the repository arrives with issue 4.)
up: pipeline

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf build model_repository .cache .pytest_cache
