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
# Runs a benchmark that needs an optional tool, or says how to get the tool.
with_tool() {
    local tool=$1 package=$2
    shift 2
    if command -v "$tool" >/dev/null 2>&1; then
        "$@"
    else
        echo "$tool not installed (Debian: apt-get install $package); skipped"
    fi
}

echo "== per request, counted: memory.copy executed (each a call out of V8's compiled code; mock host)"
with_tool wasm-as binaryen .venv/bin/python benches/wasm_copies.py
echo
echo "== Envoy: no tracing vs native OpenTelemetry tracer vs sidetrace"
.venv/bin/python benches/envoy/run.py "$@"
echo

echo "== Envoy: the same at 1 %, every request with an unsampled caller's context"
.venv/bin/python benches/envoy/run.py --caller-context --export-rate 0 --variant "native 1%" \
    --variant "sidetrace in 1%" --variant "sidetrace in 1% dir" "$@"
echo
echo "== Envoy: instructions per request (callgrind; deterministic)"
with_tool valgrind valgrind .venv/bin/python benches/envoy/instructions.py
echo
echo "== Envoy: cache misses and mispredicted branches per request, where time runs above the count, and where"
echo "   the instructions and misses a variant adds ran: the module's compiled code, Envoy's, the C library's (callgrind)"
with_tool valgrind valgrind .venv/bin/python benches/envoy/instructions.py --cache-sim --split \
    --variant "native 100%" --variant "sidetrace in 100% dir" --variant "sidetrace out 100% dir" \
    --variant "native 1%" --variant "sidetrace in 1% dir"
echo
echo "== Envoy: instructions per second with no request (timers and ticks; callgrind)"
with_tool valgrind valgrind .venv/bin/python benches/envoy/instructions.py --idle-seconds 10 \
    --variant "native 100%" --variant "native 1%" --variant "sidetrace in 100% dir" --variant "sidetrace in 1% dir"
echo
echo "== Envoy: instructions per request at 20 requests a second, a quiet sidecar's pace (callgrind)"
with_tool valgrind valgrind .venv/bin/python benches/envoy/instructions.py --rate 20 --requests 600 \
    --variant "native 100%" --variant "sidetrace in 100% dir" --variant "native 1%" --variant "sidetrace in 1% dir"
echo
echo "== Envoy: instructions per request at 1 %, every request with an unsampled caller's context"
with_tool valgrind valgrind .venv/bin/python benches/envoy/instructions.py --caller-context \
    --variant "native 1%" --variant "sidetrace in 1%" --variant "sidetrace out 1%" --variant "sidetrace in 1% dir"
echo
echo "== Envoy: what each host call costs, and the least a filter must add (callgrind)"
with_tool valgrind valgrind .venv/bin/python benches/envoy/host_calls.py
echo
echo "== Envoy: an attribute read and a CEL expression evaluation in CPU time (/proc)"
.venv/bin/python benches/envoy/host_call_times.py
echo
echo "== Envoy: where its CPU goes, per request (perf)"
with_tool perf linux-perf .venv/bin/python benches/envoy/profile.py
echo
echo "== Envoy: the module's own memory (its linear memory) idle, loaded and with a full queue"
.venv/bin/python benches/envoy/memory.py
echo
echo "== Envoy: a 2 MiB request body (callgrind)"
with_tool valgrind valgrind .venv/bin/python benches/envoy/large_body.py
