"""A route's `response_headers_to_add` for sidetrace's `responseHeaders.factsHeader`: what Envoy
formats into every response for the filter to read a span's facts from. The formats
are the filter's own (`SERVER_FACTS_FORMAT` / `CLIENT_FACTS_FORMAT` in filter/src/span_facts.rs),
read from there so the two cannot drift apart."""
import os
import re

from . import paths


def _formats():
    with open(os.path.join(paths.REPO, "filter", "src", "span_facts.rs")) as source:
        text = source.read()
    found = dict(re.findall(r'pub const (\w+)_FACTS_FORMAT: &str =\s*"([^"]+)";', text))
    return {"INBOUND": found["SERVER"], "OUTBOUND": found["CLIENT"]}


FORMATS = _formats()
# The name the benchmarks, the tests and istio-manifests/facts-header.yaml give the header: a
# hop-by-hop header Envoy's connection manager drops from every response after the filters, so
# the filter reads it and never has to remove it (`span_facts::NAME_ENVOY_DROPS`).
NAME = "proxy-connection"


def route_headers(name, direction):
    """The route's `response_headers_to_add` for a listener of `direction` (INBOUND or OUTBOUND)."""
    return [{"header": {"key": name, "value": FORMATS[direction]}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
