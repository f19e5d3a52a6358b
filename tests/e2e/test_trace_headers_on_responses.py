"""Trace ids on responses without any filter setting for it, in real Envoy.

The filter writes no response headers. The recipe is Envoy's own: a route's
`response_headers_to_add` with substitution formatters reading what the filter left behind,

    traceresponse: %REQ(TRACEPARENT)%                                the request's traceparent,
                                                                     as the filter rewrote it
    x-trace-id:    %FILTER_STATE(wasm.sidetrace.trace_id:PLAIN)%     with "publishFilterState": true

Envoy evaluates `%REQ(...)%` there against the request headers the filter has already modified,
so `traceresponse` names this hop's span when it records one, and the caller's context when it
only forwards it."""
import contextlib
import secrets
import urllib.request

import yaml

from harness import sidecar_config
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.polling import poll
from harness.ports import free_port

RESPONSE_HEADERS = {
    "traceresponse": "%REQ(TRACEPARENT)%",
    "x-trace-id": "%FILTER_STATE(wasm.sidetrace.trace_id:PLAIN)%",
}
W3C_SAMPLED = 0x01


def _bootstrap(sampling_percentage, port, admin_port, collector_port):
    """One inbound listener whose only route answers itself and adds the two headers."""
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        # Overwrite: each header must carry exactly the value the recipe gives it, never a second
        # one appended to something already on the response.
        "response_headers_to_add": [{"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                                    for key, value in RESPONSE_HEADERS.items()],
    }
    virtual_hosts = [{"name": "inbound|direct", "domains": ["*"], "routes": [route]}]
    filter_config = sidecar_config.default_filter_config(randomSamplingPercentage=sampling_percentage)
    assert filter_config["publishFilterState"], "x-trace-id reads the filter state this publishes"
    return sidecar_config.inbound_only("trace-headers", port, admin_port, virtual_hosts, filter_config, collector_port)


@contextlib.contextmanager
def _sidecar(sampling_percentage):
    """`with _sidecar(100) as (get, receiver):` where `get(headers)` returns the response's headers."""
    with OtlpReceiver() as receiver:
        port, admin = free_port(), free_port()
        with Envoy(yaml.safe_dump(_bootstrap(sampling_percentage, port, admin, receiver.port)), "trace-headers"):
            def get(headers):
                request = urllib.request.Request(f"http://127.0.0.1:{port}/orders/7", headers=headers)
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == 200
                    return response.headers
            yield get, receiver


def test_a_sampled_callers_trace_comes_back_naming_this_hops_span():
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    with _sidecar(100) as (get, receiver):
        headers = get({"traceparent": f"00-{trace_id}-{caller_span}-01"})
        spans = receiver.wait_for_spans(1, predicate=lambda s: s.trace_id == trace_id)
    assert len(spans) == 1, spans
    span = spans[0]
    assert span.kind == "SERVER"
    assert span.parent_span_id == caller_span
    # The rewritten traceparent, not the caller's: the callee's parent is this hop's span.
    assert headers["traceresponse"] == f"00-{trace_id}-{span.span_id}-01"
    assert headers["x-trace-id"] == span.trace_id


def test_a_request_without_context_comes_back_naming_the_new_root():
    with _sidecar(100) as (get, receiver):
        headers = get({})
        spans = receiver.wait_for_spans(1)
    assert len(spans) == 1, spans
    span = spans[0]
    assert span.kind == "SERVER"
    assert span.parent_span_id == ""
    # A new root's flags may carry more than the sampled bit (W3C Level 2's random flag); the
    # exported span's flags say which.
    flags = span.flags & 0xFF
    assert flags & W3C_SAMPLED
    assert headers["traceresponse"] == f"00-{span.trace_id}-{span.span_id}-{flags:02x}"
    assert headers["x-trace-id"] == span.trace_id


def test_an_unsampled_callers_trace_comes_back_unsampled():
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    with _sidecar(0) as (get, receiver):
        headers = get({"traceparent": f"00-{trace_id}-{caller_span}-00"})
        # Longer than the filter's batch delay: a span recorded by mistake would have arrived.
        exported = poll(receiver.spans, bool, timeout=1.5)
    traceresponse = headers["traceresponse"]
    assert traceresponse.startswith(f"00-{trace_id}-") and traceresponse.endswith("-00"), traceresponse
    assert headers["x-trace-id"] == trace_id
    assert exported == []
