#!/usr/bin/env bash
# Where a request's wasm instructions go, function by function, under the mock host: builds the
# release module keeping its function names (same optimisation as `make build`), then samples its
# call stacks over 200,000 requests.
#
#     bash benches/wasm_profile.sh                     # a sampled server span, W3C only
#     bash benches/wasm_profile.sh unsampled outbound       # a new trace, not sampled
#     bash benches/wasm_profile.sh unsampled-with-context   # the caller's, not sampled
#     bash benches/wasm_profile.sh root-dir                 # the Envoy benchmarks' "dir" row
#     bash benches/wasm_profile.sh caller-dir               # the same with a sampled caller's context
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/profile
CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR="$out" \
    cargo build -q --release --target wasm32-wasip1 -p sidetrace
# shellcheck disable=SC2046 # the flags are separate words
wasm-opt --debuginfo $(make -s --no-print-directory wasm-opt-flags) \
    "$out/wasm32-wasip1/release/sidetrace.wasm" -o "$out/sidetrace-named.wasm"
cargo run -q --release -p sidetrace-mock-host --example profile -- "$out/sidetrace-named.wasm" "$@"
