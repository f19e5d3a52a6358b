"""Envoy matches a request's route again after the filter writes its trace headers (ABI 0.2.1
gives a filter no say in it): a route that matches on trace headers sees the ones sidetrace
wrote, not the caller's. The README says so; this holds it to Envoy."""
import urllib.request

import yaml

from harness import sidecar_config
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port


def answer(port: int, headers: dict) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/orders/7", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_the_route_is_matched_again_with_the_headers_the_filter_wrote():
    with_traceparent = {"prefix": "/", "headers": [{"name": "traceparent", "present_match": True}]}
    routes = [{"name": "inbound|orders", "domains": ["*"], "routes": [
        {"match": with_traceparent, "direct_response": {"status": 200, "body": {"inline_string": "with"}}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "without"}}},
    ]}]
    with OtlpReceiver() as receiver:
        port, admin = free_port(), free_port()
        bootstrap = sidecar_config.inbound_only("route-match", port, admin, routes,
                                                sidecar_config.default_filter_config(), receiver.port)
        with Envoy(yaml.safe_dump(bootstrap), "route-match"):
            # Arriving without context, the request matches only "without"; the filter gives it
            # a `traceparent` (a new trace), and the router answers from the route asking for one.
            assert answer(port, {}) == "with"
            # Sent with its own, it matches "with" either way: the route answers as written.
            assert answer(port, {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) == "with"
