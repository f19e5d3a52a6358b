#!/usr/bin/env bash
# Prints every benchmark figure: the side-by-side Envoy benchmark (pass --quick for a short run).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python benches/envoy/run.py "$@"
