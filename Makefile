# crossdeploy — every target installs what it needs first; there is no other set-up step.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ORT_DISABLE_TELEMETRY := 1

REPOSITORY ?= model_repository
HOST ?= 127.0.0.1
PORT ?= 8000
BUILT := $(REPOSITORY)/.built
SOURCES := $(shell find models export crossdeploy -name '*.py' 2>/dev/null) constraints.txt

WEB := serving/static/vendor/.built
ORT_WEB := ort.wasm.min.mjs ort-wasm-simd-threaded.wasm ort-wasm-simd-threaded.mjs

.PHONY: install web pipeline matrix remedies up serve bench bench-quick bench-gateway fuzz soak test clean

install: $(STAMP)

# torch first and exactly (a local CPU wheel; any other spec pulls CUDA), then everything else pinned by
# constraints.txt (which pins torch==2.13.0 too), then onnx2torch without its torchvision dependency, and
# openvino without openvino-telemetry, which reports usage unasked (its other dependencies, numpy and packaging,
# are already there): a package not installed cannot send anything.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/pip install -q -c constraints.txt --no-deps onnx2torch
	$(BIN)/pip install -q -c constraints.txt --no-deps openvino
	# the KServe SDK's typed models only, to validate the generated KServe resources (the whole SDK wants protobuf < 7)
	$(BIN)/pip install -q -c constraints.txt --no-deps --upgrade --target $(VENV)/kserve-sdk kserve
	touch $(STAMP)

# The page's one dependency, onnxruntime-web, from the npm registry through package-lock.json; the files the page
# loads are copied next to it, so nothing is fetched from a CDN at run time.
web: $(WEB)

$(WEB): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	mkdir -p serving/static/vendor
	cp $(addprefix node_modules/onnxruntime-web/dist/,$(ORT_WEB)) serving/static/vendor/
	touch $@

pipeline: install
	$(BIN)/crossdeploy pipeline --repository $(REPOSITORY)
	touch $(BUILT)

# The deployability matrix (issue 7) over the built-in specs, or over yours: make matrix SPECS="a.toml b.toml".
# Reports in build/reports/matrix/ (matrix.md, matrix.json, matrix.png, junit.xml); exits 1 if a required pathway fails.
SPECS ?=
INT8_KEEP_FLOAT ?= 4
# Seconds per step: ranking the transformer's TFLite int8 nodes for the keep-float curve takes ~5-12 min on 2 cores.
MATRIX_TIMEOUT ?= 1800
matrix: $(BUILT)
	$(BIN)/crossdeploy matrix $(SPECS) --junit build/reports/matrix/junit.xml --int8-keep-float $(INT8_KEEP_FLOAT) --timeout $(MATRIX_TIMEOUT)

# Known remedies on two recurrent models no pathway takes as they are (docs/remedies.md).
remedies: install
	$(BIN)/python docs/examples/recurrent/recurrent_models.py build
	$(BIN)/crossdeploy matrix docs/examples/recurrent/lstm.toml docs/examples/recurrent/gru.toml \
	    --out build/reports/matrix-recurrent --junit build/reports/matrix-recurrent/junit.xml

# The repository is stale when it is missing or older than the code and pins that build it.
$(BUILT): $(SOURCES) | $(STAMP)
	$(MAKE) pipeline

# The whole pathway: train, export, parity when the repository is missing or stale, then serve every variant.
up: $(BUILT) $(WEB)
	$(BIN)/crossdeploy serve --host $(HOST) --port $(PORT) --repository $(REPOSITORY)

serve: install $(WEB)
	$(BIN)/crossdeploy serve --host $(HOST) --port $(PORT) --repository $(REPOSITORY)

# The latency comparison (issue 5): in-process, cold start, through the gateway on each engine in turn (in-process,
# then Ray: throughput, p99, memory and cold start side by side); build/reports/bench/latest/.
# BENCH_ARGS="--engines inprocess" leaves Ray out (its cluster start, about half a minute, and its sweep come on top).
BENCH_ARGS ?=
bench: $(BUILT)
	$(BIN)/crossdeploy bench --repository $(REPOSITORY) $(BENCH_ARGS)

bench-quick: $(BUILT)
	$(BIN)/crossdeploy bench --quick --repository $(REPOSITORY)

# The gateway against the strict floor (bench/floor.py), with wrk (apt-get install wrk); build/reports/gateway/.
# Another gateway checkout: make bench-gateway BENCH_GATEWAY_ARGS="--gateway-python-path DIR --out DIR2" (bench/gateway_floor.py).
BENCH_GATEWAY_ARGS ?=
bench-gateway: $(BUILT)
	$(BIN)/python -m crossdeploy.bench.gateway_floor --repository $(REPOSITORY) $(BENCH_GATEWAY_ARGS)

# A longer fuzz than make test's: schemathesis over every operation of a live gateway, and the codecs' properties
# with more examples; build/reports/fuzz/ (report.json, report.md). FUZZ_ARGS="--examples N" to change.
FUZZ_ARGS ?=
fuzz: $(BUILT)
	$(BIN)/python -m crossdeploy.bench.fuzz --repository $(REPOSITORY) $(FUZZ_ARGS)

# Overload and soak: closed- and open-loop load over every variant and protocol at capacity, at 4x, and back, for
# 30 minutes (SOAK_ARGS="--minutes N"); build/reports/soak/ (report.json, report.md, PNGs over time).
SOAK_ARGS ?=
soak: $(BUILT)
	$(BIN)/python -m crossdeploy.bench.soak --repository $(REPOSITORY) $(SOAK_ARGS)

# The tables and figures of docs/, written from whatever reports build/reports/ holds (pipeline, matrix, bench, soak, fuzz,
# bench-gateway); a report not made yet leaves its section as it was, or saying which target makes it.
.PHONY: docs
docs: install
	$(BIN)/crossdeploy docs

# litert-torch's own environment (.venv-litert, about 2.2 GB, about 3 minutes): its requirements conflict with the
# main pins, so it is built apart from them, from environments/litert.txt (export/environments.py).
.PHONY: env-litert
env-litert: $(STAMP)
	$(BIN)/python -m export.environments litert

test: install $(WEB)
	$(BIN)/python -m pytest -q

clean:
	rm -rf build model_repository .cache .pytest_cache node_modules serving/static/vendor
