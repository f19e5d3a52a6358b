"""tools/dist.py: the module and its Wasm OCI image are what istio-agent accepts, and the digest a
WasmPlugin pins is the one istio-agent compares."""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import jsonschema
import pytest
import yaml

from harness import istio, paths

DIST = os.path.join(paths.REPO, "tools", "dist.py")
# What istio-agent's "oci" variant reader demands (istio/istio, pkg/wasm/imagefetcher.go).
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def module_bytes() -> bytes:
    """The built module when there is one, else a minimal valid Wasm module (header only)."""
    built = os.path.join(paths.REPO, "target", "sidetrace.wasm")
    if os.path.isfile(built):
        return open(built, "rb").read()
    return b"\0asm\x01\0\0\0"


def run_dist(module_path, out_dir, *extra):
    return subprocess.run([sys.executable, DIST, str(module_path), "--out", str(out_dir), *extra],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    work = tmp_path_factory.mktemp("dist")
    module = work / "sidetrace.wasm"
    module.write_bytes(module_bytes())
    out = work / "dist"
    result = run_dist(module, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return module.read_bytes(), out


def layout(out) -> dict:
    with tarfile.open(out / "sidetrace-oci.tar") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_manifest(files: dict) -> tuple:
    index = json.loads(files["index.json"])
    descriptor, = index["manifests"]
    assert descriptor["mediaType"] == OCI_MANIFEST
    manifest_bytes = files["blobs/sha256/" + descriptor["digest"].split(":")[1]]
    assert descriptor["size"] == len(manifest_bytes)
    return descriptor, json.loads(manifest_bytes)


def test_the_module_and_its_checksum(dist):
    module, out = dist
    assert (out / "sidetrace.wasm").read_bytes() == module
    # sha256sum format, so `sha256sum -c` checks a download.
    assert (out / "sidetrace.wasm.sha256").read_text() == f"{sha256(module)}  sidetrace.wasm\n"


def test_the_layout_is_complete_and_content_addressed(dist):
    _, out = dist
    files = layout(out)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert "index.json" in files
    blobs = {name: data for name, data in files.items() if name.startswith("blobs/")}
    assert len(blobs) == 3, "manifest, runtime config, module"
    for name, data in blobs.items():
        assert name == "blobs/sha256/" + sha256(data), name
    descriptor, manifest = image_manifest(files)
    for referenced in [manifest["config"]] + manifest["layers"]:
        data = files["blobs/sha256/" + referenced["digest"].split(":")[1]]
        assert referenced["size"] == len(data)


def test_the_image_is_the_wasm_variant_istio_reads(dist):
    module, out = dist
    _, manifest = image_manifest(layout(out))
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == WASM_CONFIG
    # istio-agent refuses this variant unless there are exactly two layers, one of them the module.
    assert [layer["mediaType"] for layer in manifest["layers"]] == [WASM_CONFIG, WASM_LAYER]
    wasm_layer = manifest["layers"][1]
    assert wasm_layer["digest"] == "sha256:" + sha256(module)
    assert wasm_layer["size"] == len(module)


def test_the_digest_file_names_the_manifest(dist):
    _, out = dist
    descriptor, _ = image_manifest(layout(out))
    assert (out / "sidetrace-oci.digest").read_text() == descriptor["digest"] + "\n"


def test_the_rendered_wasmplugins_pin_what_istio_compares(dist):
    """For an oci url istio-agent checks `sha256` (and the url's @sha256) against the image
    manifest's digest (pkg/wasm/cache.go); the image must hold this module."""
    module, out = dist
    files = layout(out)
    descriptor, manifest = image_manifest(files)
    manifest_hex = descriptor["digest"].split(":")[1]
    assert manifest["layers"][1]["digest"] == "sha256:" + sha256(module)
    schemas = istio.crd_schemas()
    rendered = [d for d in yaml.safe_load_all((out / "wasmplugin.yaml").read_text()) if d]
    shipped = istio.manifests("wasmplugin.yaml")
    assert len(rendered) == len(shipped) >= 2
    for pinned, original in zip(rendered, shipped):
        jsonschema.validate(pinned, schemas[(pinned["apiVersion"], pinned["kind"])])
        spec = pinned["spec"]
        assert spec["sha256"] == manifest_hex
        repository = original["spec"]["url"].rsplit(":", 1)[0]
        assert spec["url"] == f"{repository}@sha256:{manifest_hex}"
        rest = {k: v for k, v in spec.items() if k not in ("url", "sha256")}
        assert rest == {k: v for k, v in original["spec"].items() if k != "url"}, "only the pin differs"


def test_the_same_module_gives_the_same_bytes(dist, tmp_path):
    module, out = dist
    source = tmp_path / "module.wasm"
    source.write_bytes(module)
    again = tmp_path / "again"
    assert run_dist(source, again).returncode == 0
    for name in ("sidetrace-oci.tar", "sidetrace-oci.digest", "wasmplugin.yaml"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    with tarfile.open(out / "sidetrace-oci.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_a_different_module_gives_a_different_pin(dist, tmp_path):
    module, out = dist
    other = tmp_path / "other.wasm"
    other.write_bytes(module + b"\0")
    assert run_dist(other, tmp_path / "other").returncode == 0
    assert (tmp_path / "other" / "sidetrace-oci.digest").read_text() != (out / "sidetrace-oci.digest").read_text()


def test_refuses_what_is_not_a_module(tmp_path):
    missing = run_dist(tmp_path / "absent.wasm", tmp_path / "out")
    assert missing.returncode == 1 and "make build" in missing.stderr
    text = tmp_path / "text.wasm"
    text.write_bytes(b"not wasm")
    assert run_dist(text, tmp_path / "out").returncode == 1
    assert not (tmp_path / "out" / "sidetrace-oci.tar").exists()
