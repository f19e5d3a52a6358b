"""W3C-only sidecars sampling few requests, in real Envoy: a caller's unsampled context passes
through untouched, a request without one starts a new trace, and a sampled request still gets its
connected spans."""
import re
import uuid

import pytest

from harness.chains import assert_chain, spans_of
from harness.mesh import Mesh
from harness.sidecar_config import default_filter_config

CALLER_SPAN = "00f067aa0ba902b7"
TOPOLOGY = {"svc-a": ["svc-b"], "svc-b": []}


@pytest.fixture(scope="module")
def mesh():
    config = default_filter_config(
        randomSamplingPercentage=0,
        propagation={"extract": ["tracecontext", "baggage"], "inject": ["tracecontext", "baggage"]},
        excludePaths=[],
    )
    with Mesh(TOPOLOGY, filter_config=lambda _name: config) as mesh:
        yield mesh


def seen_by(mesh, service, path):
    return mesh.pods[service].app.headers_for(path)


def test_an_unsampled_callers_context_reaches_every_app_as_it_came(mesh):
    trace_id = uuid.uuid4().hex
    sent = {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-00", "tracestate": "vendor=opaque", "baggage": "tenant=a"}
    before = mesh.stats()
    status, _ = mesh.get("svc-a", "/passing", sent)
    assert status == 200
    for service in ("svc-a", "svc-b"):
        seen = seen_by(mesh, service, "/passing")
        assert {name: seen.get(name) for name in sent} == sent, service
    after = mesh.wait_for_stats(lambda s: s["spans_started"] - before["spans_started"] >= 3)
    assert after["spans_started"] - before["spans_started"] == 3
    assert after["spans_sampled"] == before["spans_sampled"]
    assert after["invalid_context"] == before["invalid_context"]
    lines = mesh.pods["svc-b"].wait_for_access_log(f"trace_id={trace_id}", 1)
    assert re.search(r"span_id=(\w+)", lines[-1]).group(1) == CALLER_SPAN, "the log names the app's parent"


def test_a_request_without_context_starts_one_unsampled_trace_and_drops_a_stray_tracestate(mesh):
    status, _ = mesh.get("svc-a", "/rootless", {"tracestate": "stray=1", "baggage": "tenant=b"})
    assert status == 200
    seen_a, seen_b = seen_by(mesh, "svc-a", "/rootless"), seen_by(mesh, "svc-b", "/rootless")
    traceparent = seen_a["traceparent"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-02", traceparent), traceparent
    assert "tracestate" not in seen_a, "a tracestate without its traceparent is discarded"
    assert seen_a["baggage"] == "tenant=b"
    assert seen_b["traceparent"] == traceparent, "the callee continues the same unsampled context"


def test_a_malformed_traceparent_is_counted_and_replaced(mesh):
    before = mesh.stats()
    status, _ = mesh.get("svc-a", "/malformed", {"traceparent": "00-XYZ-nothex-00", "tracestate": "old=1"})
    assert status == 200
    seen = seen_by(mesh, "svc-a", "/malformed")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-02", seen["traceparent"]), seen["traceparent"]
    assert "tracestate" not in seen
    after = mesh.wait_for_stats(lambda s: s["invalid_context"] > before["invalid_context"])
    assert after["invalid_context"] - before["invalid_context"] == 1


def test_a_sampled_caller_still_gets_its_connected_spans(mesh):
    trace_id = uuid.uuid4().hex
    status, _ = mesh.get("svc-a", "/sampled-here", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01",
                                                     "tracestate": "vendor=kept"})
    assert status == 200
    server_a, _, server_b = assert_chain(spans_of(mesh, trace_id, 3), trace_id, CALLER_SPAN)
    assert server_a.attributes["url.path"] == "/sampled-here", "the span read the whole request"
    seen = seen_by(mesh, "svc-b", "/sampled-here")
    assert seen["traceparent"] == f"00-{trace_id}-{server_b.span_id}-01"
    assert seen["tracestate"] == "vendor=kept"


def test_an_unrecorded_outbound_call_without_context_starts_a_trace_uncounted(mesh):
    """With `direction: auto` the listener's direction is read only for a recorded span: an
    unsampled outbound call without context starts a new trace and is not counted (the shipped
    Istio plugins set `direction` and count every one; test_two_hop_mesh counts a recorded one)."""
    from harness.apps import App
    before = mesh.stats()
    App.call("svc-b", mesh.pods["svc-a"].outbound_port, "/orphan-low", {})
    seen = seen_by(mesh, "svc-b", "/orphan-low")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-02", seen["traceparent"]), seen["traceparent"]
    after = mesh.wait_for_stats(lambda s: s["spans_started"] >= before["spans_started"] + 2)
    assert after["outbound_without_context"] == before["outbound_without_context"]
