"""The filter in real Envoy: one connected trace per request across a two-hop mesh."""
import re
import uuid

import pytest

from harness.chains import assert_chain, by_role, spans_of

CALLER_SPAN = "00f067aa0ba902b7"


def new_trace_id() -> str:
    return uuid.uuid4().hex


def test_w3c_request_is_one_connected_trace_with_semconv_attributes(mesh):
    trace_id = new_trace_id()
    status, _ = mesh.get("svc-a", "/orders/42?x=1", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    assert status == 200
    server_a, client_a, server_b = assert_chain(spans_of(mesh, trace_id, 3), trace_id, CALLER_SPAN)
    for span in (server_a, client_a, server_b):
        assert span.name == "GET /orders/{id}" or span.name.startswith("GET ")
        assert span.attributes["http.request.method"] == "GET"
        assert span.attributes["url.path"] == "/orders/42"
        assert "url.query" not in span.attributes
        assert span.attributes["http.response.status_code"] == 200
        assert isinstance(span.attributes["http.response.status_code"], int)
        assert span.attributes["network.protocol.version"] == "1.1"
        assert span.status == "UNSET"
        assert span.flags & 0x1, "sampled flag"
        assert span.resource["telemetry.sdk.name"] == "sidetrace"
    assert server_a.service == "svc-a" and server_b.service == "svc-b"
    assert server_a.resource["k8s.pod.name"] == "svc-a-pod"
    assert server_a.resource["k8s.namespace.name"] == "demo"
    assert client_a.attributes["server.address"] == "svc-b"
    assert client_a.attributes["envoy.upstream_cluster"] == "outbound|svc-b"
    assert re.match(r"127\.0\.0\.1:\d+", client_a.attributes["upstream.address"])
    assert server_b.attributes["client.address"] == "127.0.0.1"
    assert server_a.attributes["http.request.header.x-request-id"] == server_b.attributes["http.request.header.x-request-id"]


def test_upstream_503_marks_the_right_spans_as_errors(mesh):
    trace_id = new_trace_id()
    status, _ = mesh.get("svc-a", "/pay/fail", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    assert status == 502, "app A turns B's 503 into a 502"
    server_a, client_a, server_b = assert_chain(spans_of(mesh, trace_id, 3), trace_id, CALLER_SPAN)
    assert server_b.attributes["http.response.status_code"] == 503 and server_b.status == "ERROR"
    assert client_a.attributes["http.response.status_code"] == 503 and client_a.status == "ERROR"
    assert server_a.attributes["http.response.status_code"] == 502 and server_a.status == "ERROR"


def test_client_4xx_is_an_error_but_server_4xx_is_not(mesh):
    trace_id = new_trace_id()
    mesh.pods["svc-a"].app.calls.append(("no-such-service", mesh.pods["svc-a"].outbound_port))
    try:
        mesh.get("svc-a", "/mixed", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    finally:
        mesh.pods["svc-a"].app.calls.pop()
    spans = spans_of(mesh, trace_id, 4)
    clients = [s for s in spans if s.kind == "CLIENT" and s.attributes["http.response.status_code"] == 404]
    assert len(clients) == 1 and clients[0].status == "ERROR"


FORMATS = {
    "b3": lambda t: {"b3": f"{t}-{CALLER_SPAN}-1"},
    "b3multi": lambda t: {"X-B3-TraceId": t, "X-B3-SpanId": CALLER_SPAN, "X-B3-Sampled": "1"},
    "xray": lambda t: {"X-Amzn-Trace-Id": f"Root=1-{t[:8]}-{t[8:]};Parent={CALLER_SPAN};Sampled=1;Lineage=a87bd80c:1"},
    "jaeger": lambda t: {"uber-trace-id": f"{t}:{CALLER_SPAN}:0:1"},
    "tracecontext": lambda t: {"traceparent": f"00-{t}-{CALLER_SPAN}-01", "tracestate": "vendor=1"},
}


@pytest.mark.parametrize("format_name", sorted(FORMATS))
def test_every_incoming_format_keeps_the_callers_trace(mesh, format_name):
    trace_id = new_trace_id()
    status, _ = mesh.get("svc-a", f"/fmt/{format_name}", FORMATS[format_name](trace_id))
    assert status == 200
    server_a, client_a, server_b = assert_chain(spans_of(mesh, trace_id, 3), trace_id, CALLER_SPAN)
    seen = mesh.pods["svc-b"].app.headers_for(f"/fmt/{format_name}")
    assert seen["traceparent"] == f"00-{trace_id}-{server_b.span_id}-01", "app B's parent is B's SERVER span"
    assert seen["x-b3-spanid"] == server_b.span_id
    assert "b3" not in seen and "uber-trace-id" not in seen, "stale parents of non-injected formats are removed"
    if format_name == "tracecontext":
        assert seen["tracestate"] == "vendor=1"


def test_span_facts_arrive_in_one_expression_evaluation(mesh):
    """Envoy evaluates the module's CEL expression for every fact a span records (status, protocol,
    peer, route, upstream) in one host call; the counter of spans that fell back to one
    attribute read per fact stays still, and the facts are all there."""
    before = mesh.stats()
    trace_id = new_trace_id()
    status, _ = mesh.get("svc-a", "/facts", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    assert status == 200
    server_a, client_a, server_b = assert_chain(spans_of(mesh, trace_id, 3), trace_id, CALLER_SPAN)
    after = mesh.wait_for_stats(lambda s: s["spans_started"] - before["spans_started"] >= 3)
    assert after["spans_started"] - before["spans_started"] == 3
    assert after["facts_read_one_by_one"] == before["facts_read_one_by_one"]
    for span in (server_a, client_a, server_b):
        assert span.attributes["network.protocol.version"] == "1.1"
        assert span.attributes["http.response.status_code"] == 200
    assert server_b.attributes["client.address"] == "127.0.0.1"
    assert client_a.attributes["envoy.upstream_cluster"] == "outbound|svc-b"
    assert client_a.attributes["network.peer.address"] == "127.0.0.1"


def test_unsampled_requests_propagate_without_spans(mesh):
    trace_id = new_trace_id()
    before = mesh.stats()
    status, _ = mesh.get("svc-a", "/quiet", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-00"})
    assert status == 200
    seen = mesh.pods["svc-b"].app.headers_for("/quiet")
    assert seen["traceparent"].startswith(f"00-{trace_id}-") and seen["traceparent"].endswith("-00")
    assert mesh.receiver.wait_for_spans(1, timeout=1.5, predicate=lambda s: s.trace_id == trace_id) == []
    after = mesh.wait_for_stats(lambda s: s["spans_started"] - before["spans_started"] >= 3)
    assert after["spans_started"] - before["spans_started"] == 3
    assert after["spans_sampled"] == before["spans_sampled"]


def test_health_checks_get_no_span_but_keep_propagation(mesh):
    trace_id = new_trace_id()
    status, _ = mesh.get("svc-a", "/healthz", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    assert status == 200
    seen = mesh.pods["svc-a"].app.headers_for("/healthz")
    assert seen["traceparent"].startswith(f"00-{trace_id}-")
    assert mesh.receiver.wait_for_spans(1, timeout=1.5, predicate=lambda s: s.trace_id == trace_id) == []


def test_new_root_when_no_context_arrives(mesh):
    status, _ = mesh.get("svc-a", "/fresh-root")
    assert status == 200
    spans = mesh.receiver.wait_for_spans(3, timeout=15, predicate=lambda s: s.attributes.get("url.path") == "/fresh-root")
    roots = [s for s in spans if s.parent_span_id == ""]
    assert len(spans) == 3 and len(roots) == 1 and roots[0].kind == "SERVER"
    assert_chain(spans, roots[0].trace_id, "")
    assert roots[0].flags & 0x2, "W3C random flag set on roots"


def test_malformed_context_is_counted_and_a_new_trace_starts(mesh):
    before = mesh.stats()
    status, _ = mesh.get("svc-a", "/bad-context", {"traceparent": "00-XYZ-nothex-01", "b3": "garbage"})
    assert status == 200
    after = mesh.wait_for_stats(lambda s: s["invalid_context"] - before["invalid_context"] >= 2)
    assert after["invalid_context"] - before["invalid_context"] == 2
    spans = mesh.receiver.wait_for_spans(3, timeout=15, predicate=lambda s: s.attributes.get("url.path") == "/bad-context")
    assert len(spans) == 3


def test_outbound_call_without_context_is_counted(mesh):
    from harness.apps import App
    before = mesh.stats()
    App.call("svc-b", mesh.pods["svc-a"].outbound_port, "/orphan", {})
    after = mesh.wait_for_stats(lambda s: s["outbound_without_context"] > before["outbound_without_context"])
    assert after["outbound_without_context"] - before["outbound_without_context"] == 1


def test_access_log_carries_the_trace_id_of_the_span(mesh):
    trace_id = new_trace_id()
    mesh.get("svc-a", "/logged", {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    spans = by_role(spans_of(mesh, trace_id, 3))
    for service, kind in (("svc-a", "SERVER"), ("svc-a", "CLIENT"), ("svc-b", "SERVER")):
        count = 2 if service == "svc-a" else 1
        lines = mesh.pods[service].wait_for_access_log(f"trace_id={trace_id}", count)
        span_ids = {re.search(r"span_id=(\w+)", l).group(1) for l in lines}
        assert spans[service, kind].span_id in span_ids, f"{service} {kind}: {lines}"
        assert all(re.search(r"trace_id=(\w+)", l).group(1) == trace_id for l in lines)


def test_counters_reconcile_with_what_the_collector_received(mesh):
    for i in range(20):
        mesh.get("svc-a", f"/reconcile/{i}", {"traceparent": f"00-{new_trace_id()}-{CALLER_SPAN}-01"})
    mesh.receiver.wait_for_spans(60, timeout=15, predicate=lambda s: s.attributes.get("url.path", "").startswith("/reconcile/"))
    import time
    deadline = time.time() + 10
    while time.time() < deadline:
        stats = mesh.stats()
        if stats["spans_queued"] == 0 and stats["spans_exported"] == len(mesh.receiver.spans()):
            break
        time.sleep(0.2)
    stats = mesh.stats()
    assert stats["spans_sampled"] == stats["spans_exported"] + stats["spans_dropped"] + stats["spans_queued"]
    assert stats["spans_queued"] == 0
    assert stats["spans_dropped"] == 0
    assert stats["spans_exported"] == len(mesh.receiver.spans())
    assert stats["export_failures"] == 0
    assert mesh.receiver.authorities == {"otel-collector.observability"}, "collector.authority is sent"


def test_request_bodies_stream_through_untouched(mesh):
    """The filter takes no body callbacks: a 2 MB upload reaches the app byte for byte, and the
    exchange is still a span."""
    import hashlib
    import os
    trace_id = new_trace_id()
    payload = os.urandom(2 * 1024 * 1024)
    status, reply = mesh.post("svc-a", "/upload", payload, {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    assert status == 200
    assert reply["received"] == len(payload)
    assert reply["sha256"] == hashlib.sha256(payload).hexdigest()
    spans = mesh.receiver.wait_for_spans(1, timeout=15, predicate=lambda s: s.trace_id == trace_id)
    assert [(s.service, s.kind, s.attributes["http.request.method"]) for s in spans] == [("svc-a", "SERVER", "POST")]
