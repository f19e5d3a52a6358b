#!/usr/bin/env bash
# Prints every benchmark figure: native propagation micro-benchmarks, then the side-by-side
# Envoy benchmark (pass --quick for a short Envoy run).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== native propagation (criterion, release build)"
python3 benches/micro_report.py
echo
echo "== Envoy: no tracing vs native OpenTelemetry tracer vs sidetrace"
.venv/bin/python benches/envoy/run.py "$@"
