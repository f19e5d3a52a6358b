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

Where the filter has `traceIdsFromRequestIds`, a new trace's id is its request's `x-request-id`,
so its sampling decision is a function of that header too: both forms then also skip a request
without `traceparent` whose request id the filter would start an unsampled trace for (the root
twins, `unsampled_request_id`). Such a request reaches the app with no `traceparent`; the next
hops, reading the same request id, decide the same.
"""
import copy
import re

from . import facts_header


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


# Requests routed by a root twin: those it skipped, new traces Envoy decided not to sample.
ROOT_TWIN_STAT_PREFIX = "unsampled_root"
REQUEST_ID = "x-request-id"
HEX = "0123456789abcdef"
RANDOMNESS_DIGITS = 14


def rejection_threshold(percentage: float) -> int:
    """`sampling::Sampler`'s threshold T for `percentage` (kept to 0.01 %, rounded half away from
    zero as Rust rounds): a trace is sampled iff its 56 random bits are at least T."""
    hundredths = int(percentage * 100 + 0.5)
    rejected = 10_000 - hundredths
    return ((rejected // 625) << 52) + (((rejected % 625) << 53) + 625) // 1250


# A request id as Envoy writes it (`TraceId::from_request_id`): a version-4 UUID in lowercase, the
# version digit perhaps replaced by Envoy's tracing mark (9, a, b). Its last 14 digits, the trace
# id's randomness, are split by the last dash: 2 before, 12 after. `REQUEST_ID_HEAD` is what comes
# before them.
REQUEST_ID_HEAD = "[0-9a-f]{8}-[0-9a-f]{4}-[49ab][0-9a-f]{3}-[0-9a-f]{2}"
REQUEST_ID_SHAPE = re.compile(REQUEST_ID_HEAD + "[0-9a-f]{2}-[0-9a-f]{12}")


def request_id_randomness(request_id: str):
    """The 56 random bits of the trace id the filter makes of `request_id`, None where it makes
    none (and draws a random trace id instead)."""
    if not REQUEST_ID_SHAPE.fullmatch(request_id):
        return None
    return int(request_id[21:23] + request_id[24:], 16)


def root_sampled(request_id: str, percentage: float):
    """The filter's decision for a new trace taking `request_id`'s id, None where the request id
    is not one it takes (the decision is then a random trace id's)."""
    randomness = request_id_randomness(request_id)
    return None if randomness is None else randomness >= rejection_threshold(percentage)


def _digit_class(low: int, high: int) -> str:
    if low == high:
        return HEX[low]
    spans = [(max(low, start), min(high, end)) for start, end in ((0, 9), (10, 15)) if max(low, start) <= min(high, end)]
    return "[" + "".join(HEX[a] if a == b else f"{HEX[a]}-{HEX[b]}" for a, b in spans) + "]"


def _below(threshold: int, digits: int) -> list:
    """Alternatives, each `digits` one-digit patterns, together matching exactly the `digits`-digit
    lowercase hex numbers below `threshold`: for each non-zero digit of the threshold, its prefix
    then a smaller digit then anything."""
    if threshold >= 16 ** digits:
        return [["[0-9a-f]"] * digits]
    spelled = f"{threshold:0{digits}x}"
    return [list(spelled[:at]) + [_digit_class(0, HEX.index(digit) - 1)] + ["[0-9a-f]"] * (digits - at - 1)
            for at, digit in enumerate(spelled) if digit != "0"]


def _joined(patterns: list) -> str:
    """One-digit patterns in a row, runs of any digit written once with a count."""
    out, run = [], 0
    for pattern in patterns + [None]:
        if pattern == "[0-9a-f]":
            run += 1
            continue
        if run:
            out.append("[0-9a-f]" + (f"{{{run}}}" if run > 1 else ""))
            run = 0
        if pattern is not None:
            out.append(pattern)
    return "".join(out)


def unsampled_request_id(percentage: float):
    """The `x-request-id` values whose new trace the filter does not sample at `percentage`, as
    one RE2 expression matched against the whole value; None at 100 %, where it samples every
    one. The filter's decision compares the id's last 14 digits with the threshold."""
    alternatives = _below(rejection_threshold(percentage), RANDOMNESS_DIGITS)
    if not alternatives:
        return None
    randomness = "|".join(_joined(a[:2]) + "-" + _joined(a[2:]) for a in alternatives)
    return REQUEST_ID_HEAD + "(?:" + randomness + ")"


def unsampled_roots(filter_config: dict):
    """`unsampled_request_id` for the filter's sampling where it takes new traces' ids (and so
    its decisions) from `x-request-id`; None where it does not, or samples every new trace."""
    if not filter_config.get("traceIdsFromRequestIds"):
        return None
    return unsampled_request_id(filter_config.get("randomSamplingPercentage", 1.0))


def gates_roots(filter_config: dict) -> bool:
    """Whether route twins can also skip new traces (`unsampled_roots`)."""
    return unsampled_roots(filter_config) is not None


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
    facts = response_headers.get("factsHeader")
    if facts and facts.lower() != facts_header.NAME:
        raise ValueError(f"responseHeaders.factsHeader: a facts header named other than {facts_header.NAME} would "
                         "leave the sidecar on the responses of skipped requests (only the filter removes it)")


def skip_routes(virtual_hosts: list, filter_name: str, filter_config: dict) -> list:
    """`virtual_hosts` with each route preceded by a twin that, for a request carrying an unsampled
    caller's `traceparent`, routes the same way with the filter named `filter_name` disabled;
    where the filter `gates_roots`, by a second twin that does the same for a request without
    `traceparent` whose `x-request-id` starts a trace the filter would not sample. The bootstrap
    must carry `LAYERED_RUNTIME`."""
    check_applies(filter_config)
    twins = [([{"name": "traceparent", "string_match": {"safe_regex": {"regex": UNSAMPLED_TRACEPARENT}}}],
              TWIN_STAT_PREFIX)]
    request_id = unsampled_roots(filter_config)
    if request_id:
        twins.append(([{"name": "traceparent", "present_match": False},
                       {"name": REQUEST_ID, "string_match": {"safe_regex": {"regex": request_id}}}],
                      ROOT_TWIN_STAT_PREFIX))
    disabled = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
    gated = []
    for virtual_host in virtual_hosts:
        routes = []
        for route in virtual_host["routes"]:
            for headers, stat_prefix in twins:
                twin = copy.deepcopy(route)
                # Copies, so that a rendered YAML spells each out rather than aliasing one.
                twin["match"]["headers"] = twin["match"].get("headers", []) + copy.deepcopy(headers)
                twin["typed_per_filter_config"] = dict(twin.get("typed_per_filter_config", {}),
                                                       **{filter_name: dict(disabled)})
                twin["stat_prefix"] = stat_prefix
                routes.append(twin)
            routes.append(route)
        gated.append(dict(virtual_host, routes=routes))
    return gated


def delegation_stat(stat_prefix: str) -> str:
    """Envoy's count of the requests a `composite` gate ran its filter for, in the HTTP
    connection manager with `stat_prefix`."""
    return f"http.{stat_prefix}.composite.filter_delegation_success"


def _header_predicate(name: str, value_match: dict) -> dict:
    """A matcher predicate on request header `name`; false when the request lacks it."""
    return {"single_predicate": {
        "input": {"name": name, "typed_config": {
            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
            "header_name": name}},
        "value_match": value_match,
    }}


def composite(wasm_filter: dict, filter_config: dict) -> dict:
    """`wasm_filter` (an `http_filters` entry) run only for requests that do not carry an
    unsampled caller's `traceparent` and, where the filter `gates_roots`, are not a request
    without `traceparent` whose `x-request-id` starts a trace the filter would not sample. Envoy
    counts the requests it ran for in `delegation_stat`; `wrapped` gives `wasm_filter` back."""
    check_applies(filter_config)
    skipped = _header_predicate("traceparent", {"safe_regex": {"google_re2": {}, "regex": UNSAMPLED_TRACEPARENT}})
    request_id = unsampled_roots(filter_config)
    if request_id:
        unsampled_root = {"and_matcher": {"predicate": [
            {"not_matcher": _header_predicate("traceparent", {"safe_regex": {"google_re2": {}, "regex": ".*"}})},
            _header_predicate(REQUEST_ID, {"safe_regex": {"google_re2": {}, "regex": request_id}}),
        ]}}
        skipped = {"or_matcher": {"predicate": [skipped, unsampled_root]}}
    return {
        "name": "sidetrace-gate",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {"name": "composite", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.Composite"}},
            "xds_matcher": {"matcher_list": {"matchers": [{
                "predicate": {"not_matcher": skipped},
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
