"""Envoy config that keeps requests carrying an unsampled caller's W3C context out of the filter.

A W3C-only plugin passes such a request through untouched, but Envoy still calls into the VM for
it (context created, request and response headers, stream end) and the filter looks its
`traceparent` up: ~29,000 Envoy instructions, 1.7x what Envoy's own tracer adds at 1 %. Two ways
to let Envoy decide on that one header instead, both raw Envoy configuration:

- `skip_routes`: each route gets a twin ahead of it that matches such requests and disables the
  filter, so Envoy never creates it for them. Cheapest (a skipped request ~6,100 instructions, one
  let through ~3,400 more), for route tables a generator owns, as `sidecar_config` does.
- `composite`: the filter wrapped in Envoy's composite filter behind a matcher, which creates it
  only for the other requests. One filter entry, routes untouched, for configurations written by
  hand; dearer (~10,900 skipped, ~8,500 more let through).

Either pays where many requests arrive with an unsampled caller's context: a sidecar inside a mesh
sampling little, not one at the edge. Figures: README, "Keeping unsampled callers' requests out of
the filter".

Both skip the values the filter would pass through: version 00, 55 bytes, lowercase hex, trace
and span ids not all zero, sampled flag clear. Anything else (no header, a malformed or
future-version value, a sampled caller) reaches the filter as before. Two `traceparent` headers
part them: the composite's input joins them with a comma, so the filter sees the request; a route
matches each value on its own, so a twin skips a request any of whose values is an unsampled
context (the filter would take the first, or at more than 25 % sampling start a new trace).
"""
import copy


def _nonzero_hex(digits: int) -> str:
    """`digits` lowercase hex digits, not all zero, without look-ahead (RE2 has none): one
    alternative per position of the first non-zero digit."""
    alternatives = []
    for zeros in range(digits):
        rest = digits - zeros - 1
        alternatives.append("0" * zeros + "[1-9a-f]" + (f"[0-9a-f]{{{rest}}}" if rest else ""))
    return "(?:" + "|".join(alternatives) + ")"


# Envoy's string matchers match the whole value, so no anchors.
UNSAMPLED_TRACEPARENT = "00-" + _nonzero_hex(32) + "-" + _nonzero_hex(16) + "-[0-9a-f][02468ace]"

W3C_FORMATS = {"tracecontext", "baggage"}

# Route matchers refuse a regular expression whose RE2 program exceeds 100 instructions unless the
# runtime allows more; the one above compiles to ~1,400. (Istio's bootstrap raises the same limit.)
RE2_LIMITS = {"re2.max_program_size.error_level": 4096, "re2.max_program_size.warn_level": 4096}
# The bootstrap's `layered_runtime` for route twins (the admin layer keeps `/runtime_modify`).
LAYERED_RUNTIME = {"layers": [{"name": "re2", "static_layer": RE2_LIMITS}, {"name": "admin", "admin_layer": {}}]}
# Requests routed by a twin, `vhost.<name>.route.unsampled_context.upstream_rq_total`: those it
# skipped, and the new unsampled traces the filter started (Envoy matches the route again once the
# filter has written `traceparent`).
TWIN_STAT_PREFIX = "unsampled_context"


def check_applies(filter_config: dict) -> None:
    """Raises ValueError naming the setting under which the filter would do something for an
    unsampled caller's request, so skipping it would change what the request gets."""
    propagation = filter_config.get("propagation") or {}
    for direction in ("extract", "inject"):
        formats = propagation.get(direction)
        if formats is None or "tracecontext" not in formats or not set(formats) <= W3C_FORMATS:
            raise ValueError(f"propagation.{direction} must be tracecontext, with or without baggage "
                             "(other formats are translated, so the filter must see every request)")
    if filter_config.get("trustIncomingContext") is False:
        raise ValueError("trustIncomingContext: false starts a new trace for every caller's context")
    if filter_config.get("publishFilterState"):
        raise ValueError("publishFilterState: skipped requests have no filter state; "
                         "log %REQ(TRACEPARENT)% instead")
    response_headers = filter_config.get("responseHeaders") or {}
    if response_headers.get("traceresponse") or response_headers.get("traceIdHeader"):
        raise ValueError("responseHeaders: skipped requests would get no trace headers on their responses")


def skip_routes(virtual_hosts: list, filter_name: str, filter_config: dict) -> list:
    """`virtual_hosts` with each route preceded by a twin that, for a request carrying an unsampled
    caller's `traceparent`, routes the same way with the filter named `filter_name` disabled.
    The bootstrap must carry `LAYERED_RUNTIME`."""
    check_applies(filter_config)
    header = {"name": "traceparent", "string_match": {"safe_regex": {"regex": UNSAMPLED_TRACEPARENT}}}
    disabled = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
    gated = []
    for virtual_host in virtual_hosts:
        routes = []
        for route in virtual_host["routes"]:
            twin = copy.deepcopy(route)
            # Copies, so that a rendered YAML spells each out rather than aliasing one.
            twin["match"]["headers"] = twin["match"].get("headers", []) + [copy.deepcopy(header)]
            twin["typed_per_filter_config"] = dict(twin.get("typed_per_filter_config", {}),
                                                   **{filter_name: dict(disabled)})
            twin["stat_prefix"] = TWIN_STAT_PREFIX
            routes += [twin, route]
        gated.append(dict(virtual_host, routes=routes))
    return gated


def delegation_stat(stat_prefix: str) -> str:
    """Envoy's count of the requests a `composite` gate ran its filter for, in the HTTP
    connection manager with `stat_prefix`."""
    return f"http.{stat_prefix}.composite.filter_delegation_success"


def composite(wasm_filter: dict, filter_config: dict) -> dict:
    """`wasm_filter` (an `http_filters` entry) run only for requests that do not carry an
    unsampled caller's `traceparent`. Envoy counts the requests it ran for in `delegation_stat`;
    `wrapped` gives `wasm_filter` back."""
    check_applies(filter_config)
    unsampled_caller = {"single_predicate": {
        "input": {"name": "traceparent", "typed_config": {
            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
            "header_name": "traceparent"}},
        "value_match": {"safe_regex": {"google_re2": {}, "regex": UNSAMPLED_TRACEPARENT}},
    }}
    return {
        "name": "sidetrace-gate",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {"name": "composite", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.Composite"}},
            "xds_matcher": {"matcher_list": {"matchers": [{
                "predicate": {"not_matcher": unsampled_caller},
                "on_match": {"action": {"name": "sidetrace", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.ExecuteFilterAction",
                    "typed_config": wasm_filter}}},
            }]}},
        },
    }


def wrapped(gate: dict) -> dict:
    """The filter a `composite` gate runs (the same object, so changing it changes the gate)."""
    matcher = gate["typed_config"]["xds_matcher"]["matcher_list"]["matchers"][0]
    return matcher["on_match"]["action"]["typed_config"]["typed_config"]
