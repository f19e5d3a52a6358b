"""A route's `response_headers_to_add` for sidetrace's `responseHeaders.factsHeader`: what Envoy
formats into every response for the filter to read a span's facts from. The formats and the
header's name are the filter's own (`SERVER_FACTS_FORMAT` / `CLIENT_FACTS_FORMAT` and
`NAME_ENVOY_DROPS` in filter/src/span_facts.rs), read from there so the two cannot drift apart."""
import os
import re

from . import paths


def _constants():
    with open(os.path.join(paths.REPO, "filter", "src", "span_facts.rs")) as source:
        return dict(re.findall(r'pub const (\w+): &str =\s*"([^"]+)";', source.read()))


_CONSTANTS = _constants()
FORMATS = {"INBOUND": _CONSTANTS["SERVER_FACTS_FORMAT"], "OUTBOUND": _CONSTANTS["CLIENT_FACTS_FORMAT"]}
# The name the benchmarks, the tests and istio-manifests/facts-header.yaml give the header: a
# hop-by-hop header Envoy's connection manager drops from every response after the filters, so
# the filter reads it and never has to remove it.
NAME = _CONSTANTS["NAME_ENVOY_DROPS"]


def route_headers(name, direction):
    """The route's `response_headers_to_add` for a listener of `direction` (INBOUND or OUTBOUND)."""
    return [{"header": {"key": name, "value": FORMATS[direction]}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
