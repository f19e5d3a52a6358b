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

# The release build is size-tuned in Cargo.toml; wasm-opt trims it further when installed.
# `--low-memory-unused` holds because the stack starts at 1 MiB and grows down, data and heap lie
# above it: nothing lives in the first KiB, so constant offsets fold into loads and stores.
# Functions that differ only in constants (each element type's `Vec` growth, std's formatting
# impls; none on a request's path) are merged into one taking them as parameters. Stack IR
# optimisation drops the local.set/get pairs left between expressions. Passes run in the order
# given, and stack IR is lost if anything changes the module after it: the stack IR passes come
# last.
WASM_OPT_FLAGS := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
	--enable-mutable-globals --low-memory-unused --strip-producers -O3 --converge \
	--merge-similar-functions --generate-stack-ir --optimize-stack-ir
build: wasm-target
	cargo build --release --target $(WASM_TARGET) -p sidetrace
	@if command -v wasm-opt >/dev/null 2>&1; then \
		wasm-opt --strip-debug $(WASM_OPT_FLAGS) $(WASM_BUILT) -o $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	else \
		echo "wasm-opt not found: using the unoptimised module"; cp $(WASM_BUILT) $(WASM); \
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
