"""Every Envoy config in the repository is current and valid, and the compose stack hangs together."""
import glob
import os
import subprocess
import sys

import pytest
import yaml

from harness import paths
from harness.envoy import validate

CONFIGS = os.path.join(paths.REPO, "envoy-configs")
ENVOY_CONFIGS = sorted(glob.glob(os.path.join(CONFIGS, "*.yaml")) + glob.glob(os.path.join(CONFIGS, "compose", "*.yaml")))
ENVOY_CONFIGS = [p for p in ENVOY_CONFIGS if "static_resources" in open(p).read()]


def test_committed_configs_are_what_the_generator_renders():
    result = subprocess.run([sys.executable, os.path.join(CONFIGS, "render.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_configs_to_validate():
    names = {os.path.relpath(p, CONFIGS) for p in ENVOY_CONFIGS}
    assert {"sidecar.yaml", "compose/frontend.yaml", "compose/checkout.yaml", "compose/payments.yaml"} <= names


@pytest.mark.parametrize("path", ENVOY_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIGS))
def test_envoy_validates(path, tmp_path):
    text = open(path).read()
    # Container paths point at the module this repository builds; validation loads it for real.
    text = text.replace("/etc/envoy/sidetrace.wasm", paths.wasm_path())
    text = text.replace("filename: target/sidetrace.wasm", f"filename: {paths.wasm_path()}")
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    result = validate(str(config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK" in result.stdout + result.stderr


def test_the_compose_stack_is_consistent():
    compose = yaml.safe_load(open(os.path.join(CONFIGS, "docker-compose.yaml")))
    services = compose["services"]
    for name in ("frontend", "checkout", "payments"):
        app, sidecar = services[name], services[f"{name}-sidecar"]
        assert sidecar["network_mode"] == f"service:{name}", "the sidecar shares the app's network, like a pod"
        assert sidecar["image"].startswith("envoyproxy/envoy:v1.40"), "same Envoy major as the tests"
        mounts = {m.split(":")[1]: m.split(":")[0] for m in sidecar["volumes"]}
        assert mounts["/etc/envoy/envoy.yaml"] == f"./compose/{name}.yaml"
        assert mounts["/etc/envoy/sidetrace.wasm"] == "../target/sidetrace.wasm"
        assert all(m.endswith(":ro") for m in sidecar["volumes"]), "wasm and config mounted read-only"
        rendered = yaml.safe_load(open(os.path.join(CONFIGS, "compose", f"{name}.yaml")))
        clusters = {c["name"]: c for c in rendered["static_resources"]["clusters"]}
        for cluster in clusters.values():
            host = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"]
            assert host in services or host == "127.0.0.1", f"{name}: cluster {cluster['name']} points at {host}"
        assert "--name" in app["command"] and name in app["command"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert os.path.exists(os.path.join(CONFIGS, source)), f"{name}: {source} does not exist"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    collector = yaml.safe_load(open(os.path.join(CONFIGS, "otel-collector.yaml")))
    policies = {p["type"] for p in collector["processors"]["tail_sampling"]["policies"]}
    assert {"status_code", "latency", "probabilistic", "string_attribute"} <= policies
    datasources = yaml.safe_load(open(os.path.join(CONFIGS, "grafana", "datasources.yaml")))
    loki = [d for d in datasources["datasources"] if d["type"] == "loki"][0]
    assert loki["jsonData"]["derivedFields"][0]["matcherRegex"] == "trace_id=(\\w+)"
