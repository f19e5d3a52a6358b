#!/usr/bin/env bash
# Stages the built module as plugin.wasm for the OCI image and prints the checksums to pin.
#   make build && bash istio-manifests/image/build.sh [registry/repo:tag]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wasm="$here/../../target/sidetrace.wasm"
image=${1:-registry.example.com/observability/sidetrace:0.1.0}
[ -f "$wasm" ] || { echo "no $wasm: run 'make build' first" >&2; exit 1; }
cp "$wasm" "$here/plugin.wasm"
sum=$(sha256sum "$here/plugin.wasm" | cut -d' ' -f1)
echo "plugin.wasm: $(stat -c %s "$here/plugin.wasm") bytes, sha256 $sum"
echo
echo "Serving the module over https? Pin it in the WasmPlugin with:"
echo "  url: https://<host>/sidetrace.wasm"
echo "  sha256: $sum"
echo
echo "As an OCI image:"
echo "  docker build -t $image $here && docker push $image"
echo "then pin the pushed image digest (docker inspect --format '{{index .RepoDigests 0}}' $image):"
echo "  url: oci://$image"
echo "  sha256: <the 64 hex digits after sha256: in that digest>"
