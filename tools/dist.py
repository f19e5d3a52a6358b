#!/usr/bin/env python3
"""Packages a built module as the artifact to pin, without Docker.

    python3 tools/dist.py [MODULE]        (MODULE defaults to target/sidetrace.wasm)

writes into dist/ (or --out):

  sidetrace.wasm          the module, as served over https
  sidetrace.wasm.sha256   its checksum in sha256sum format: what a WasmPlugin with an
                          `https://` url pins in `sha256`
  sidetrace-oci.tar       a Wasm OCI image as an OCI image layout tarball (oci-layout,
                          index.json, blobs/sha256/...), tagged --tag
  sidetrace-oci.digest    the image manifest's digest, `sha256:<hex>`: what a WasmPlugin with an
                          `oci://` url pins, in the url (`@sha256:<hex>`) and in `sha256`
  wasmplugin.yaml         istio-manifests/wasmplugin.yaml with every `oci://` url pinned to that
                          digest

istio-agent compares a WasmPlugin's `sha256` with the sha256 of the module it downloaded for an
http(s) url, but with the digest of the image manifest for an oci url (istio/istio,
pkg/wasm/cache.go): the two files hold one each.

The image is the "oci" variant of the Wasm image spec that istio-agent reads
(pkg/wasm/imagefetcher.go): a manifest of exactly two layers, the module itself as
`application/vnd.module.wasm.content.layer.v1+wasm` and a runtime config as
`application/vnd.module.wasm.config.v1+json`, which is also the manifest's config. istio-agent
refuses that variant with any other number of layers, so the config layer is not optional.

The same module gives the same bytes every time: JSON with sorted keys, tar entries in sorted order
with fixed owners, modes and mtimes, so the digest can be reviewed and pinned before a push.
Push it with digests kept, e.g.
    skopeo copy --preserve-digests oci-archive:dist/sidetrace-oci.tar:0.1.0 docker://REPO:0.1.0
or unpack it and run `oras cp --from-oci-layout DIR:0.1.0 REPO:0.1.0`.
"""
import argparse
import hashlib
import io
import json
import os
import re
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
WASM_MAGIC = b"\0asm"
# The filter exports this ABI version (filter/src/wasm/exports.rs).
ABI_VERSION = "proxy_abi_version_0_2_1"
# A fixed time for every tar entry: the digest must not depend on when the build ran.
TAR_MTIME = 0


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, annotations: dict = None) -> dict:
    out = {"mediaType": media_type, "digest": "sha256:" + sha256_hex(data), "size": len(data)}
    if annotations:
        out["annotations"] = annotations
    return out


def image_layout(module: bytes, tag: str) -> tuple:
    """(files of the layout by path, manifest digest)."""
    runtime_config = canonical_json({"type": "envoy_proxy", "abiVersions": [ABI_VERSION], "config": {}})
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(WASM_CONFIG, runtime_config),
        "layers": [
            descriptor(WASM_CONFIG, runtime_config, {TITLE: "runtime-config.json"}),
            descriptor(WASM_LAYER, module, {TITLE: "sidetrace.wasm"}),
        ],
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, manifest, {REF_NAME: tag})],
    })
    files = {"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in (runtime_config, module, manifest):
        files["blobs/sha256/" + sha256_hex(blob)] = blob
    return files, "sha256:" + sha256_hex(manifest)


def tar_bytes(files: dict) -> bytes:
    entries = dict(files)
    for path in files:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            entries["/".join(parts[:depth]) + "/"] = None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(entries):
            data = entries[path]
            info = tarfile.TarInfo(path.rstrip("/"))
            info.mtime = TAR_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


OCI_URL = re.compile(r"^(?P<indent>\s*)url: oci://(?P<repo>[^\s:@]+(?::\d+/[^\s:@]+)?)(?::[^\s@]+)?(?:@sha256:[0-9a-f]{64})?\s*$")
SHA256_FIELD = re.compile(r"^\s*sha256:")


def pinned_manifest(text: str, digest: str) -> str:
    """`text` with every `url: oci://repo:tag` line pinned as `url: oci://repo@sha256:<hex>` and
    followed by `sha256: <hex>`; an existing `sha256:` line is replaced. Done on the text, so the
    comments stay."""
    hex_digest = digest.split(":", 1)[1]
    out = []
    for line in text.splitlines(keepends=True):
        if SHA256_FIELD.match(line):
            continue
        match = OCI_URL.match(line)
        if match:
            indent, repo = match["indent"], match["repo"]
            out.append(f"{indent}url: oci://{repo}@sha256:{hex_digest}\n")
            out.append(f"{indent}sha256: {hex_digest}\n")
        else:
            out.append(line)
    return "".join(out)


def write(path: str, data: bytes):
    with open(path, "wb") as f:
        f.write(data)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", nargs="?", default=os.path.join(REPO, "target", "sidetrace.wasm"))
    parser.add_argument("--out", default=os.path.join(REPO, "dist"))
    parser.add_argument("--tag", default="0.1.0", help="the image's tag in index.json")
    parser.add_argument("--manifest", default=os.path.join(REPO, "istio-manifests", "wasmplugin.yaml"),
                        help="the WasmPlugins to render pinned")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.module):
        print(f"{args.module} is missing: build it first with `make build`", file=sys.stderr)
        return 1
    module = open(args.module, "rb").read()
    if not module.startswith(WASM_MAGIC):
        print(f"{args.module} is not a Wasm module", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    files, digest = image_layout(module, args.tag)
    write(os.path.join(args.out, "sidetrace.wasm"), module)
    write(os.path.join(args.out, "sidetrace.wasm.sha256"), f"{sha256_hex(module)}  sidetrace.wasm\n".encode())
    write(os.path.join(args.out, "sidetrace-oci.tar"), tar_bytes(files))
    write(os.path.join(args.out, "sidetrace-oci.digest"), f"{digest}\n".encode())
    manifest = open(args.manifest).read()
    write(os.path.join(args.out, "wasmplugin.yaml"), pinned_manifest(manifest, digest).encode())
    print(f"module sha256 {sha256_hex(module)} ({len(module)} bytes)")
    print(f"image {digest} (tag {args.tag}) in {os.path.join(args.out, 'sidetrace-oci.tar')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
