"""The shipped gateway WasmPlugin, rendered as istiod would and run in real Envoy on a
gateway-shaped listener: istiod gives a gateway's listeners CLIENT plugins and marks them
outbound, yet the gateway records one SERVER span per request, and an outside caller's context
becomes a link: it neither joins the mesh's trace nor forces sampling."""
import copy
import uuid

from harness import istio, paths, sidecar_config
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port

OUTSIDE_SPAN = "00f067aa0ba902b7"


def gateway_plugin(percentage):
    plugin = copy.deepcopy(istio.manifest("gateway.yaml"))
    plugin["spec"]["pluginConfig"]["randomSamplingPercentage"] = percentage
    return plugin


def run_gateway(percentage, requests):
    """Sends `requests` (headers each) through a gateway-shaped listener; returns the spans."""
    with OtlpReceiver() as receiver, App("payments", free_port()) as backend:
        config, ports = istio.sidecar(free_port(), {"payments": backend.port}, receiver.port)
        config = istio.apply_to_sidecar(config, gateway_plugin(percentage), paths.wasm_path())
        gateway = next(l for l in config["static_resources"]["listeners"] if l["name"] == "outbound")
        assert gateway["traffic_direction"] == "OUTBOUND", "a gateway's listener, as istiod marks it"
        with Envoy(sidecar_config.to_yaml(config), "gateway", env=istio.PROXY_ENV) as envoy:
            for headers in requests:
                status = App.call("payments", ports["outbound"], "/shop/items/3", headers)
                assert status == 200, envoy.log_tail()
            expected = len(requests) if percentage == 100 else 0
            if expected:
                receiver.wait_for_spans(expected, timeout=15)
            stats = envoy.wait_for_sidetrace_stats(
                lambda s: s.get("spans_started", 0) >= len(requests), timeout=10)
            return receiver.spans(), stats


def test_one_server_span_per_request_with_the_outside_context_as_a_link():
    outside_trace = uuid.uuid4().hex
    outside = {"traceparent": f"00-{outside_trace}-{OUTSIDE_SPAN}-01"}
    spans, stats = run_gateway(100, [outside, {}])
    assert [s.kind for s in spans] == ["SERVER", "SERVER"], [(s.kind, s.name) for s in spans]
    linked = [s for s in spans if s.links]
    assert len(linked) == 1
    span = linked[0]
    assert span.trace_id != outside_trace, "outside context does not join the mesh's trace"
    assert span.parent_span_id == ""
    assert span.links == [(outside_trace, OUTSIDE_SPAN)]
    assert stats["spans_started"] == 2


def test_an_outside_caller_cannot_force_sampling():
    outside = {"traceparent": f"00-{uuid.uuid4().hex}-{OUTSIDE_SPAN}-01"}
    spans, stats = run_gateway(0, [outside] * 5)
    assert spans == []
    assert stats["spans_started"] == 5 and stats.get("spans_sampled", 0) == 0
