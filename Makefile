# sidetrace: build the filter, run the demo mesh, run every test.
# `make demo` is the main job; `make test` is what CI runs.

SHELL := /bin/bash
WASM_TARGET := wasm32-wasip1
WASM_BUILT := target/$(WASM_TARGET)/release/sidetrace.wasm
WASM := target/sidetrace.wasm
VENV := .venv
PYTHON := $(VENV)/bin/python
ARGS ?=

.PHONY: all build dist wasm-opt-flags wasm-target venv test test-rust test-mock-host test-envoy test-envoy-matrix demo bench fmt lint clean

all: build

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# wasm-opt optimises the release build further when binaryen is installed. The features are
# those Rust's wasm32-wasip1 target emits.
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
	--enable-mutable-globals
WASM_OPT_FLAGS := $(WASM_FEATURES) --strip-producers -O3
# The proxy-wasm SDK exports every callback of the ABI, and Envoy calls each one a module
# exports (a body callback for every chunk): wasm-metadce keeps only the exports listed in
# filter/exports.json, the callbacks the filter implements and what the ABI requires.
build: wasm-target
	cargo build --release --target $(WASM_TARGET) -p sidetrace
	@if command -v wasm-opt >/dev/null 2>&1 && command -v wasm-metadce >/dev/null 2>&1; then \
		wasm-metadce $(WASM_FEATURES) --graph-file filter/exports.json $(WASM_BUILT) -o $(WASM).dce >/dev/null && \
		wasm-opt --strip-debug $(WASM_OPT_FLAGS) $(WASM).dce -o $(WASM).tmp && mv $(WASM).tmp $(WASM) && rm $(WASM).dce; \
	else \
		echo "binaryen (wasm-opt, wasm-metadce) not found: using the unoptimised module"; cp $(WASM_BUILT) $(WASM); \
	fi
	@echo "built $(WASM): $$(stat -c %s $(WASM)) bytes"

# The artifact to pin: the module, its sha256, a Wasm OCI image layout tarball, its manifest
# digest and the WasmPlugins pinned to it, in dist/ (tools/dist.py; no Docker needed).
dist: build
	python3 tools/dist.py $(WASM)

# For scripts that optimise a module of their own the same way (benches/wasm_profile.sh).
wasm-opt-flags:
	@echo $(WASM_OPT_FLAGS)

venv: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt tests/bootstrap.sh
	bash tests/bootstrap.sh

test-rust:
	cargo test -p sidetrace

test-mock-host: build
	cargo test -p sidetrace-mock-host

test-envoy: build venv
	$(PYTHON) -m pytest -q tests

# The real-Envoy tests on each Envoy line from 1.36 on, all with the module `make build` made;
# ENVOY_VERSIONS="1.36.4 1.40.0" narrows the run.
ENVOY_VERSIONS ?=
test-envoy-matrix: build venv
	bash tests/envoy_matrix.sh $(ENVOY_VERSIONS)

# Everything: native unit and property tests, the .wasm under the mock host, then real Envoy.
test: test-rust test-mock-host test-envoy

demo: build venv
	$(PYTHON) demo/run.py $(ARGS)

bench: build venv
	bash benches/report.sh

fmt:
	cargo fmt --all

lint: wasm-target
	cargo fmt --all -- --check
	cargo clippy -p sidetrace -p sidetrace-mock-host --all-targets -- -D warnings
	cargo clippy -p sidetrace -p sidetrace-probe-filter --lib --release --target $(WASM_TARGET) -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV) dist
