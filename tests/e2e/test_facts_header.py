"""`responseHeaders.factsHeader` in a real Envoy: the route adds a response header Envoy formats
with a span's facts (harness.facts_header), the filter reads the facts from it instead of
evaluating its CEL expression, and no response, sampled or not, carries it out: under the name
the project uses (`proxy-connection`) because Envoy drops it after the filters, under any other
because the filter removes it, which it can only do on the responses it sees."""
import shutil
import subprocess

import pytest
import yaml

from harness import facts_header, sidecar_config
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port

# A name Envoy would let through: the filter itself must remove it.
NAME_THE_FILTER_REMOVES = "x-sidetrace-facts"
TRACE_IDS = {
    "/orders/7": "7a3f0c5e9b2d41e6a8c7d5b3e1f09a24",
    "/forged": "0b1c2d3e4f5a69788796a5b4c3d2e1f0",
    "/plain": "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
}
UNSAMPLED_TRACE = "1f2e3d4c5b6a79881726354453627180"
HTTP2_TRACE = "2c3d4e5f60718293a4b5c6d7e8f90a1b"


def route(name, prefix, status, headers_to_add):
    entry = {"name": name, "match": {"prefix": prefix},
             "direct_response": {"status": status, "body": {"inline_string": "ok"}}}
    if headers_to_add:
        entry["response_headers_to_add"] = headers_to_add
    return entry


def traceparent(trace_id, flags):
    return f"00-{trace_id}-00f067aa0ba902b7-{flags}"


def get(port, path, flags):
    return App.fetch(port, path, {"traceparent": traceparent(TRACE_IDS.get(path, UNSAMPLED_TRACE), flags)})


def curl_speaks_http2():
    if not shutil.which("curl"):
        return False
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    return "HTTP2" in version


def get_over_http2(port, path, flags):
    """(status, the lowercase names of the response's headers) of a GET over HTTP/2 (cleartext,
    prior knowledge), by curl."""
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                          "-H", f"traceparent: {traceparent(HTTP2_TRACE, flags)}",
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    lines = out.splitlines()
    assert lines[0].startswith("HTTP/2 "), lines
    names = {line.split(":", 1)[0].strip().lower() for line in lines[1:] if ":" in line}
    return int(lines[0].split()[1]), names


def facts_header_envoy(header, receiver):
    """Envoy with four inbound routes: the documented format on /orders; a literal on /forged,
    which only the header could have put on its span; none on /plain, whose facts come from the
    expression; the format on /skipped, with the filter disabled there (as the unsampled gate's
    route twins disable it)."""
    forged = [{"header": {"key": header, "value": "299 HTTP/9 10.9.9.9:99 from the header"},
               "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    virtual_hosts = [{"name": "inbound", "domains": ["*"], "routes": [
        route("orders", "/orders", 201, facts_header.route_headers(header, "INBOUND")),
        route("forged", "/forged", 200, forged),
        route("plain", "/plain", 200, None),
        dict(route("skipped", "/skipped", 200, facts_header.route_headers(header, "INBOUND")),
             typed_per_filter_config={sidecar_config.WASM_FILTER: {
                 "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}}),
    ]}]
    port, admin = free_port(), free_port()
    config = sidecar_config.default_filter_config(direction="inbound", responseHeaders={"factsHeader": header})
    bootstrap = sidecar_config.inbound_only("facts-header", port, admin, virtual_hosts, config, receiver.port)
    return port, Envoy(yaml.safe_dump(bootstrap), "facts-header")


@pytest.mark.parametrize("header", [facts_header.NAME, NAME_THE_FILTER_REMOVES])
def test_a_span_takes_its_facts_from_the_routes_header_which_never_reaches_the_client(header):
    with OtlpReceiver() as receiver:
        port, envoy_process = facts_header_envoy(header, receiver)
        with envoy_process as envoy:
            answers = {path: get(port, path, "01") for path in TRACE_IDS}
            answers["/orders/8 unsampled"] = get(port, "/orders/8", "00")
            skipped_status, skipped_headers = get(port, "/skipped", "01")
            spans = receiver.wait_for_spans(len(TRACE_IDS), predicate=lambda s: s.trace_id in TRACE_IDS.values())
            stats = envoy.wait_for_sidetrace_stats(lambda s: s.get("spans_started", 0) >= len(TRACE_IDS))
    # Only /plain's span had no header to read; every span found its facts without the one-by-one reads.
    assert stats.get("facts_header_unread") == 1, stats
    assert stats.get("facts_read_one_by_one", 0) == 0, stats
    for path, (status, headers) in answers.items():
        assert status in (200, 201), (path, status)
        assert header not in headers, (path, headers)
    # Where the filter does not run, only Envoy can keep the header in.
    assert skipped_status == 200
    assert (header in skipped_headers) == (header != facts_header.NAME), skipped_headers
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


@pytest.mark.skipif(not curl_speaks_http2(), reason="needs curl built with HTTP/2")
def test_over_http2_the_header_envoy_drops_is_read_and_never_reaches_the_client():
    with OtlpReceiver() as receiver:
        port, envoy_process = facts_header_envoy(facts_header.NAME, receiver)
        with envoy_process:
            answers = {flags: get_over_http2(port, "/orders/9", flags) for flags in ("01", "00")}
            spans = receiver.wait_for_spans(1, predicate=lambda s: s.trace_id == HTTP2_TRACE)
    for flags, (status, headers) in answers.items():
        assert status == 201, (flags, status)
        assert facts_header.NAME not in headers, (flags, headers)
    assert len(spans) == 1, spans
    assert spans[0].name == "GET orders", spans[0]
    assert spans[0].attributes["network.protocol.version"] == "2"
    assert spans[0].attributes["http.response.status_code"] == 201
