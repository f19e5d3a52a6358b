"""The shipped WasmPlugins, turned into Envoy config the way istiod does, running in real Envoy
with Istio's node metadata: spans carry the pod's identity and the plugins' custom tags, and the
two plugins share one VM."""
import copy
import time
import uuid

import pytest

from harness import istio, paths, sidecar_config
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port


def istio_sidecar(plugins, receiver, app_port, payments_port):
    """The checkout pod's sidecar with istiod's filter for each of `plugins`."""
    config, ports = istio.sidecar(app_port, {"payments": payments_port}, receiver.port)
    for plugin in plugins:
        config = istio.apply_to_sidecar(config, plugin, paths.wasm_path())
    return config, ports


def test_wasmplugins_run_in_envoy_with_istio_identity_and_custom_tags():
    plugins = istio.manifests("wasmplugin.yaml")
    assert [p["spec"]["match"][0]["mode"] for p in plugins] == ["SERVER", "CLIENT"]
    with OtlpReceiver() as receiver, App("payments", free_port()) as payments, App("checkout", free_port()) as app:
        config, ports = istio_sidecar(plugins, receiver, app.port, payments.port)
        app.calls = [("payments", ports["outbound"])]
        with Envoy(sidecar_config.to_yaml(config), "istio-checkout", env=istio.PROXY_ENV) as envoy:
            trace_id = uuid.uuid4().hex
            status = App.call("checkout", ports["inbound"], "/cart/9", {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
            assert status == 200
            spans = receiver.wait_for_spans(2, timeout=15, predicate=lambda s: s.trace_id == trace_id)
            assert sorted(s.kind for s in spans) == ["CLIENT", "SERVER"], envoy.log_tail()
            server = next(s for s in spans if s.kind == "SERVER")
            client = next(s for s in spans if s.kind == "CLIENT")
            assert client.parent_span_id == server.span_id
            # istiod names both routes "default": the spans are named from the path instead.
            assert (server.name, client.name) == ("GET /cart/{id}", "GET /cart/{id}")
            for span in spans:
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
            # One VM for the main thread, one for the worker, and the one they are cloned from:
            # the two plugins share them (with a VM each, Envoy runs six).
            assert envoy.stats()["wasm.envoy.wasm.runtime.v8.active"] == 3


@pytest.mark.parametrize("manifest,index,expected_kinds", [
    ("wasmplugin.yaml", 0, {"SERVER"}),
    ("wasmplugin.yaml", 1, {"CLIENT"}),
    ("wasmplugin-match-examples.yaml", 0, {"SERVER"}),
    ("wasmplugin-match-examples.yaml", 1, {"CLIENT"}),
    ("trafficextension.yaml", 0, {"SERVER"}),
    ("trafficextension.yaml", 1, {"CLIENT"}),
])
def test_match_mode_decides_which_listeners_record(manifest, index, expected_kinds):
    plugin = copy.deepcopy(istio.manifest(manifest, index))
    istio.wasm_spec(plugin)["pluginConfig"]["randomSamplingPercentage"] = 100
    istio.wasm_spec(plugin)["pluginConfig"]["batch"] = {"scheduledDelayMs": 100}
    with OtlpReceiver() as receiver, App("payments", free_port()) as payments, App("checkout", free_port()) as app:
        config, ports = istio_sidecar([plugin], receiver, app.port, payments.port)
        app.calls = [("payments", ports["outbound"])]
        with Envoy(sidecar_config.to_yaml(config), "istio-match", env=istio.PROXY_ENV) as envoy:
            assert App.call("checkout", ports["inbound"], "/match", {}) == 200
            receiver.wait_for_spans(len(expected_kinds), timeout=10)
            time.sleep(0.5)  # a span of a kind not expected would arrive with the next batch
            kinds = {s.kind for s in receiver.spans()}
            assert kinds == expected_kinds, envoy.log_tail()
