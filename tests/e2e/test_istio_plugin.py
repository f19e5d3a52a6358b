"""The shipped WasmPlugin, turned into Envoy config the way istiod does, running in real Envoy
with Istio's node metadata: spans carry the pod's identity and the plugin's custom tags."""
import copy
import os
import uuid

import pytest
import yaml

from harness import istio, paths, sidecar_config
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port

COLLECTOR = "outbound|4317||otel-collector.observability.svc.cluster.local"
NODE = istio.istio_node_metadata(
    name="checkout-7d9f8c-x2x4q",
    namespace="shop",
    workload="checkout-v2",
    labels={"app": "checkout-app", "service.istio.io/canonical-name": "checkout", "service.istio.io/canonical-revision": "v2"},
    cluster_id="east-1",
    mesh_id="mesh-a",
)
PROXY_ENV = {"ISTIO_META_CLUSTER_ID": "east-1", "POD_NAMESPACE": "shop"}


def load(name, index=0):
    return list(yaml.safe_load_all(open(os.path.join(paths.REPO, "istio-manifests", name))))[index]


def istio_sidecar(plugin, receiver, app_port):
    ports = {"admin": free_port(), "inbound": free_port(), "outbound": free_port()}
    config = sidecar_config.sidecar(
        service="checkout",
        admin_port=ports["admin"],
        inbound_port=ports["inbound"],
        app=("127.0.0.1", app_port),
        outbound_port=ports["outbound"],
        upstreams={"payments": ("127.0.0.1", app_port)},
        collector=("127.0.0.1", receiver.port),
        wasm=paths.wasm_path(),
        node_metadata=NODE,
    )
    # The collector cluster under the name Istio gives it.
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == sidecar_config.COLLECTOR_CLUSTER:
            renamed = copy.deepcopy(cluster)
            renamed["name"] = renamed["load_assignment"]["cluster_name"] = COLLECTOR
            config["static_resources"]["clusters"].append(renamed)
            break
    return istio.apply_to_sidecar(config, plugin, paths.wasm_path()), ports


def test_wasmplugin_runs_in_envoy_with_istio_identity_and_custom_tags():
    plugin = load("wasmplugin.yaml")
    with OtlpReceiver() as receiver, App("checkout", free_port()) as app:
        config, ports = istio_sidecar(plugin, receiver, app.port)
        with Envoy(sidecar_config.to_yaml(config), "istio-checkout", env=PROXY_ENV) as envoy:
            trace_id = uuid.uuid4().hex
            status = App.call("checkout", ports["inbound"], "/cart/9", {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
            assert status == 200
            spans = receiver.wait_for_spans(1, timeout=15, predicate=lambda s: s.trace_id == trace_id)
            assert len(spans) == 1, envoy.log_tail()
            span = spans[0]
            assert span.kind == "SERVER"
            resource = span.resource
            assert resource["service.name"] == "checkout", "canonical-name label wins over app"
            assert resource["service.version"] == "v2"
            assert resource["k8s.pod.name"] == "checkout-7d9f8c-x2x4q"
            assert resource["k8s.namespace.name"] == "shop"
            assert resource["k8s.cluster.name"] == "east-1"
            assert resource["service.mesh"] == "mesh-a"
            assert span.attributes["k8s.cluster"] == "east-1", "HOST env var from the proxy's environment"
            assert span.attributes["deployment.environment"] == "production", "INLINE env var"
            assert span.attributes["tenant"] == "none", "header tag default"
            assert span.attributes["mesh.provider"] == "istio"
            assert "sidetrace config" not in envoy.log_text(), "pluginConfig accepted"


@pytest.mark.parametrize("manifest,index,expected_kinds", [
    ("wasmplugin-match-examples.yaml", 0, {"SERVER"}),
    ("wasmplugin-match-examples.yaml", 1, {"CLIENT"}),
    ("trafficextension.yaml", 0, {"SERVER", "CLIENT"}),
])
def test_match_mode_decides_which_listeners_record(manifest, index, expected_kinds):
    plugin = load(manifest, index)
    plugin = copy.deepcopy(plugin)
    istio.wasm_spec(plugin)["pluginConfig"]["randomSamplingPercentage"] = 100
    istio.wasm_spec(plugin)["pluginConfig"]["batch"] = {"scheduledDelayMs": 100}
    with OtlpReceiver() as receiver, App("payments", free_port()) as payments:
        with App("checkout", free_port()) as app:
            config, ports = istio_sidecar(plugin, receiver, payments.port)
            app.calls = [("payments", ports["outbound"])]
            config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = app.port
            with Envoy(sidecar_config.to_yaml(config), "istio-match", env=PROXY_ENV) as envoy:
                assert App.call("checkout", ports["inbound"], "/match", {}) == 200
                spans = receiver.wait_for_spans(len(expected_kinds), timeout=10)
                import time
                time.sleep(0.5)
                kinds = {s.kind for s in receiver.spans()}
                assert kinds == expected_kinds, envoy.log_tail()
