#!/usr/bin/env bash
# Prints every benchmark figure: native propagation micro-benchmarks, per-request cost counted
# under the mock host, then the side-by-side Envoy benchmark (pass --quick for a short run).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== native propagation (criterion, release build)"
python3 benches/micro_report.py
echo
echo "== per request, counted: host calls and wasm instructions (mock host, deterministic)"
cargo run --release -q -p sidetrace-mock-host --example cost
echo
echo "== Envoy: no tracing vs native OpenTelemetry tracer vs sidetrace"
.venv/bin/python benches/envoy/run.py "$@"
echo
echo "== Envoy: instructions per request (callgrind; deterministic)"
if command -v valgrind >/dev/null 2>&1; then
    .venv/bin/python benches/envoy/instructions.py
else
    echo "valgrind not installed (Debian: apt-get install valgrind); skipped"
fi
echo
echo "== Envoy: where its CPU goes, per request (perf)"
if command -v perf >/dev/null 2>&1; then
    .venv/bin/python benches/envoy/profile.py
else
    echo "perf not installed (Debian: apt-get install linux-perf); skipped"
fi
