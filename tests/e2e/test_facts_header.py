"""`responseHeaders.factsHeader` in a real Envoy: the route adds a response header Envoy formats
with a span's facts (harness.facts_header), the filter reads the facts from it instead of
evaluating its CEL expression, and removes it: no response, sampled or not, carries it out."""
import yaml

from harness import facts_header, sidecar_config
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port

HEADER = facts_header.NAME
TRACE_IDS = {
    "/orders/7": "7a3f0c5e9b2d41e6a8c7d5b3e1f09a24",
    "/forged": "0b1c2d3e4f5a69788796a5b4c3d2e1f0",
    "/plain": "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
}
UNSAMPLED_TRACE = "1f2e3d4c5b6a79881726354453627180"


def route(name, prefix, status, headers_to_add):
    entry = {"name": name, "match": {"prefix": prefix},
             "direct_response": {"status": status, "body": {"inline_string": "ok"}}}
    if headers_to_add:
        entry["response_headers_to_add"] = headers_to_add
    return entry


def get(port, path, flags):
    trace_id = TRACE_IDS.get(path, UNSAMPLED_TRACE)
    return App.fetch(port, path, {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-{flags}"})


def test_a_span_takes_its_facts_from_the_routes_header_which_never_reaches_the_client(tmp_path):
    # The documented format on /orders; a literal on /forged, which only the header could have
    # put on its span; none on /plain, whose facts come from the expression.
    forged = [{"header": {"key": HEADER, "value": "299 HTTP/9 10.9.9.9:99 from the header"},
               "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    virtual_hosts = [{"name": "inbound", "domains": ["*"], "routes": [
        route("orders", "/orders", 201, facts_header.route_headers(HEADER, "INBOUND")),
        route("forged", "/forged", 200, forged),
        route("plain", "/plain", 200, None),
    ]}]
    with OtlpReceiver() as receiver:
        port, admin = free_port(), free_port()
        config = sidecar_config.default_filter_config(direction="inbound", responseHeaders={"factsHeader": HEADER})
        bootstrap = sidecar_config.inbound_only("facts-header", port, admin, virtual_hosts, config, receiver.port)
        with Envoy(yaml.safe_dump(bootstrap), "facts-header") as envoy:
            answers = {path: get(port, path, "01") for path in TRACE_IDS}
            answers["/orders/8 unsampled"] = get(port, "/orders/8", "00")
            spans = receiver.wait_for_spans(len(TRACE_IDS), predicate=lambda s: s.trace_id in TRACE_IDS.values())
            stats = envoy.wait_for_sidetrace_stats(lambda s: s.get("spans_started", 0) >= len(TRACE_IDS))
    # Only /plain's span had no header to read; every span found its facts without the one-by-one reads.
    assert stats.get("facts_header_unread") == 1, stats
    assert stats.get("facts_read_one_by_one", 0) == 0, stats
    for path, (status, headers) in answers.items():
        assert status in (200, 201), (path, status)
        assert HEADER not in headers, (path, headers)
    by_trace = {span.trace_id: span for span in spans}
    assert UNSAMPLED_TRACE not in by_trace

    orders = by_trace[TRACE_IDS["/orders/7"]]
    assert orders.name == "GET orders", orders
    assert orders.attributes["http.response.status_code"] == 201
    assert orders.attributes["network.protocol.version"] == "1.1"
    assert orders.attributes["client.address"] == "127.0.0.1"
    assert orders.attributes["network.peer.address"] == "127.0.0.1"
    assert orders.attributes["network.peer.port"] > 0

    forged_span = by_trace[TRACE_IDS["/forged"]]
    assert forged_span.name == "GET from the header", forged_span
    assert forged_span.attributes["http.response.status_code"] == 299
    assert forged_span.attributes["network.peer.address"] == "10.9.9.9"
    assert "network.protocol.version" not in forged_span.attributes

    plain = by_trace[TRACE_IDS["/plain"]]
    assert plain.name == "GET plain", plain
    assert plain.attributes["http.response.status_code"] == 200
    assert plain.attributes["network.protocol.version"] == "1.1"
