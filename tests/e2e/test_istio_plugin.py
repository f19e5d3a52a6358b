"""The shipped WasmPlugin, turned into Envoy config the way istiod does, running in real Envoy
with Istio's node metadata: spans carry the pod's identity and the plugin's custom tags."""
import copy
import uuid

import pytest

from harness import istio, paths, sidecar_config
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port

def istio_sidecar(plugin, receiver, app_port):
    config, ports = istio.sidecar(app_port, {"payments": app_port}, receiver.port)
    return istio.apply_to_sidecar(config, plugin, paths.wasm_path()), ports


def test_wasmplugin_runs_in_envoy_with_istio_identity_and_custom_tags():
    plugin = istio.manifest("wasmplugin.yaml")
    with OtlpReceiver() as receiver, App("checkout", free_port()) as app:
        config, ports = istio_sidecar(plugin, receiver, app.port)
        with Envoy(sidecar_config.to_yaml(config), "istio-checkout", env=istio.PROXY_ENV) as envoy:
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
    plugin = istio.manifest(manifest, index)
    plugin = copy.deepcopy(plugin)
    istio.wasm_spec(plugin)["pluginConfig"]["randomSamplingPercentage"] = 100
    istio.wasm_spec(plugin)["pluginConfig"]["batch"] = {"scheduledDelayMs": 100}
    with OtlpReceiver() as receiver, App("payments", free_port()) as payments:
        with App("checkout", free_port()) as app:
            config, ports = istio_sidecar(plugin, receiver, payments.port)
            app.calls = [("payments", ports["outbound"])]
            config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = app.port
            with Envoy(sidecar_config.to_yaml(config), "istio-match", env=istio.PROXY_ENV) as envoy:
                assert App.call("checkout", ports["inbound"], "/match", {}) == 200
                spans = receiver.wait_for_spans(len(expected_kinds), timeout=10)
                import time
                time.sleep(0.5)
                kinds = {s.kind for s in receiver.spans()}
                assert kinds == expected_kinds, envoy.log_tail()
