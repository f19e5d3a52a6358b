"""A span ends when Envoy is done with the stream, after its access log: what Envoy knows about a
failed exchange by then (status, response flags, the upstream it tried) is on the span."""
import urllib.error
import urllib.request

import yaml

from harness import sidecar_config
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port

TRACE_ID = "7a3f0c5e9b2d41e6a8c7d5b3e1f09a24"


def test_a_refused_upstream_connection_is_described_on_the_span(tmp_path):
    closed_port = free_port()  # nothing listens there: Envoy's connection is refused
    with OtlpReceiver() as receiver:
        port, admin = free_port(), free_port()
        routes = [{"name": "inbound|dead", "domains": ["*"],
                   "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "dead", "timeout": "5s"}}]}]
        bootstrap = sidecar_config.inbound_only("stream-end", port, admin, routes, sidecar_config.default_filter_config(),
                                                receiver.port, [sidecar_config._cluster("dead", "127.0.0.1", closed_port)])
        with Envoy(yaml.safe_dump(bootstrap), "stream-end"):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/orders/7",
                                             headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
            try:
                urllib.request.urlopen(request, timeout=10)
                status = 200
            except urllib.error.HTTPError as error:
                status = error.code
            assert status == 503
            spans = receiver.wait_for_spans(1, predicate=lambda s: s.trace_id == TRACE_ID)
    span = spans[0]
    assert span.kind == "SERVER"
    assert span.attributes["http.response.status_code"] == 503
    assert span.status == "ERROR"
    assert span.attributes["envoy.response_flags"] == "UF", span.attributes
    assert span.attributes["network.protocol.version"] == "1.1"
    assert span.attributes["client.address"] == "127.0.0.1"
    assert span.end_ns >= span.start_ns
