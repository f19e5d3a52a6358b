"""The shipped WasmPlugins, turned into Envoy config the way istiod does, running in real Envoy
with Istio's node metadata: spans carry the pod's identity and the plugins' custom tags, and the
two plugins share one VM."""
import copy
import time
import uuid

import pytest

from harness import facts_header, istio, paths, sidecar_config
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


def test_the_facts_header_manifest_hands_spans_their_facts_and_no_response_carries_it():
    """istio-manifests/facts-header.yaml, applied as istiod does, with both WasmPlugins told to
    read the header: every span takes its facts from it (none falls back to the expression), and
    neither the caller nor the app ever sees it."""
    facts = istio.manifest("facts-header.yaml")
    header = {p["patch"]["value"]["response_headers_to_add"][0]["header"]["key"] for p in facts["spec"]["configPatches"]}
    assert header == {facts_header.NAME}
    formats = {p["match"]["context"]: p["patch"]["value"]["response_headers_to_add"][0]["header"]["value"]
               for p in facts["spec"]["configPatches"]}
    assert formats == {"SIDECAR_INBOUND": facts_header.FORMATS["INBOUND"],
                       "SIDECAR_OUTBOUND": facts_header.FORMATS["OUTBOUND"]}, "the filter's own formats"
    plugins = copy.deepcopy(istio.manifests("wasmplugin.yaml"))
    for plugin in plugins:
        istio.wasm_spec(plugin)["pluginConfig"].update(
            randomSamplingPercentage=100, batch={"scheduledDelayMs": 100},
            responseHeaders={"factsHeader": facts_header.NAME})
    with OtlpReceiver() as receiver, App("payments", free_port()) as payments, App("checkout", free_port()) as app:
        config, ports = istio_sidecar(plugins, receiver, app.port, payments.port)
        config = istio.apply_envoy_filter(config, facts, {}, {})
        app.calls = [("payments", ports["outbound"])]
        with Envoy(sidecar_config.to_yaml(config), "istio-facts", env=istio.PROXY_ENV) as envoy:
            trace_id = uuid.uuid4().hex
            inbound = App.fetch(ports["inbound"], "/cart/9", {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
            # What the app's own call gets back, made here to see its headers.
            outbound = App.fetch(ports["outbound"], "/pay", {"host": "payments"})
            spans = receiver.wait_for_spans(2, timeout=15, predicate=lambda s: s.trace_id == trace_id)
            stats = envoy.wait_for_sidetrace_stats(lambda s: s.get("spans_started", 0) >= 3)
    for status, headers in (inbound, outbound):
        assert status == 200
        assert facts_header.NAME not in headers, headers
    server = next(s for s in spans if s.kind == "SERVER")
    client = next(s for s in spans if s.kind == "CLIENT")
    for span in (server, client):
        assert span.attributes["http.response.status_code"] == 200
        assert span.attributes["network.protocol.version"] == "1.1"
        assert span.name == "GET /cart/{id}", "istiod's route name `default` passed over"
    assert server.attributes["client.address"] == "127.0.0.1"
    assert client.attributes["network.peer.address"] == "127.0.0.1"
    assert client.attributes["envoy.upstream_cluster"].startswith("outbound|"), client.attributes
    assert stats.get("facts_header_unread", 0) == 0, stats
    assert stats.get("facts_read_one_by_one", 0) == 0, stats
