"""The root twin in real Envoy (`harness.unsampled_gate.skip_routes` for a filter with
`traceIdsFromRequestIds`): a new trace takes its request's `x-request-id` as trace id, so the
sampling decision is a function of that header, and Envoy, matching it against the
unsampled ids' expression, keeps the filter out of every request whose new trace would not be
sampled; the composite form (`unsampled_gate.composite`) does the same in its matcher. Three
W3C-only meshes side by side, behind route twins, behind the composite and with no gate, get the
same requests: every
decision must be the one computed here from the request id, the same on both sides and at every
hop, and only the requests the gated side skips go without a `traceparent`."""
import collections
import random
import re
import uuid

import pytest

from harness.chains import assert_chain, spans_of
from harness.mesh import Mesh
from harness.polling import steady
from harness.sidecar_config import default_filter_config
from harness.unsampled_gate import (REQUEST_ID, ROOT_TWIN_STAT_PREFIX, TWIN_STAT_PREFIX, delegation_stat,
                                    gates_roots, rejection_threshold, root_sampled, skip_routes,
                                    unsampled_request_id)

PERCENTAGE = 50.0
GATES = ("routes", "composite")
SIDES = GATES + ("plain",)
HOPS = 3  # a's inbound, a's outbound, b's inbound
W3C_ONLY = {"extract": ["tracecontext", "baggage"], "inject": ["tracecontext", "baggage"]}
W3C_CONFIG = default_filter_config(randomSamplingPercentage=PERCENTAGE, propagation=W3C_ONLY, excludePaths=[],
                                   publishFilterState=False, traceIdsFromRequestIds=True)


def request_id_with_randomness(randomness: int, version: str = "4") -> str:
    """A version-4 UUID (or one carrying Envoy's tracing mark `version`) whose last 56 bits are
    `randomness`."""
    digits = uuid.uuid4().hex[:18] + f"{randomness:014x}"
    return f"{digits[:8]}-{digits[8:12]}-{version}{digits[13:16]}-{digits[16:20]}-{digits[20:]}"


def test_the_expression_matches_exactly_the_request_ids_not_sampled():
    generator = random.Random(7)
    for percentage in (0.0, 0.01, 1.0, 12.34, 33.33, 50.0, 99.99):
        expression = re.compile(unsampled_request_id(percentage))
        threshold = rejection_threshold(percentage)
        near = [max(threshold - 1, 0), min(threshold, 2 ** 56 - 1), min(threshold + 1, 2 ** 56 - 1), 0, 2 ** 56 - 1]
        randomness = near + [generator.getrandbits(56) for _ in range(400)]
        for value in randomness:
            for version in "49ab":
                request_id = request_id_with_randomness(value, version)
                assert bool(expression.fullmatch(request_id)) == (not root_sampled(request_id, percentage)), \
                    (percentage, request_id)
        for other in ("2848A896-120D-48C5-9D4F-317EAF0BC7A6", "2848a896-120d-18c5-9d4f-317eaf0bc7a6",
                      "2848a896120d48c59d4f317eaf0bc7a6", "req-1", ""):
            assert root_sampled(other, percentage) is None
            assert not expression.fullmatch(other), (percentage, other)
    assert unsampled_request_id(100.0) is None
    # Twins only where the filter takes trace ids from request ids and samples fewer than all.
    virtual_hosts = [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]
    for config, twins in ((dict(W3C_CONFIG), 2), (dict(W3C_CONFIG, traceIdsFromRequestIds=False), 1),
                          (dict(W3C_CONFIG, randomSamplingPercentage=100), 1)):
        routes = skip_routes(virtual_hosts, "sidetrace", config)[0]["routes"]
        assert len(routes) == twins + 1 and gates_roots(config) == (twins == 2)
        assert [route.get("stat_prefix") for route in routes[:twins]] == [TWIN_STAT_PREFIX, ROOT_TWIN_STAT_PREFIX][:twins]


@pytest.fixture(scope="module")
def mesh():
    topology = {f"{side}-{hop}": ([f"{side}-b"] if hop == "a" else []) for side in SIDES for hop in "ab"}
    with Mesh(topology, filter_config=lambda _name: W3C_CONFIG,
              gate_unsampled=lambda name: next((gate for gate in GATES if name.startswith(gate)), None)) as mesh:
        yield mesh


def side_counters(mesh, side):
    total = {"spans_started": 0, "spans_sampled": 0, "root_twin": 0, "caller_twin": 0, "delegated": 0}
    for name, pod in mesh.pods.items():
        if not name.startswith(side):
            continue
        stats = pod.envoy.stats()
        total["spans_started"] += stats.get("wasmcustom.sidetrace.spans_started", 0)
        total["spans_sampled"] += stats.get("wasmcustom.sidetrace.spans_sampled", 0)
        total["delegated"] += sum(stats.get(delegation_stat(listener), 0) for listener in ("inbound", "outbound"))
        for key, prefix in (("root_twin", ROOT_TWIN_STAT_PREFIX), ("caller_twin", TWIN_STAT_PREFIX)):
            total[key] += sum(value for stat, value in stats.items()
                              if stat.endswith(f".route.{prefix}.upstream_rq_total"))
    return total


def settled(mesh):
    return steady(lambda: {side: side_counters(mesh, side) for side in SIDES})


def seen(mesh, side, path):
    return mesh.pods[f"{side}-a"].app.headers_for(path), mesh.pods[f"{side}-b"].app.headers_for(path)


def test_every_hop_decides_by_the_request_id_and_the_gate_skips_the_unsampled(mesh):
    threshold = rejection_threshold(PERCENTAGE)
    sent = [request_id_with_randomness(random.getrandbits(56)) for _ in range(12)]
    # Either side of the threshold, and with Envoy's tracing marks in the version digit.
    sent += [request_id_with_randomness(threshold - 1), request_id_with_randomness(threshold),
             request_id_with_randomness(threshold - 1, "a"), request_id_with_randomness(threshold, "b")]
    sent += [None] * 4  # Envoy gives these their request ids.
    before = settled(mesh)
    decided = {side: [] for side in SIDES}
    for request_id in sent:
        path = f"/root-gate/{uuid.uuid4().hex}"
        for side in SIDES:
            status, _ = mesh.get(f"{side}-a", path, {REQUEST_ID: request_id} if request_id else {})
            assert status == 200
            first, second = seen(mesh, side, path)
            own_id = first[REQUEST_ID]
            assert second[REQUEST_ID] == own_id, "the app forwards its request id"
            if request_id:
                assert own_id == request_id
            sampled = root_sampled(own_id, PERCENTAGE)
            assert sampled is not None, own_id
            trace_id = own_id.replace("-", "")
            if side in GATES and not sampled:
                # Skipped at every hop: no filter wrote a context.
                assert "traceparent" not in first and "traceparent" not in second, own_id
            else:
                # The trace id is the request id's, the random flag set, the decision the one
                # computed here; the next hop continues it.
                for traceparent in (first["traceparent"], second["traceparent"]):
                    assert re.fullmatch(rf"00-{trace_id}-[0-9a-f]{{16}}-0{2 + sampled}", traceparent), \
                        (side, own_id, traceparent)
            decided[side].append((trace_id, sampled))
    for side in GATES:
        assert [sampled for _, sampled in decided[side][:16]] == [sampled for _, sampled in decided["plain"][:16]]
        assert [sampled for _, sampled in decided[side][12:16]] == [False, True, False, True]

    sampled_traces = {side: [trace for trace, sampled in decided[side] if sampled] for side in SIDES}
    unsampled_count = {side: len(decided[side]) - len(sampled_traces[side]) for side in SIDES}
    assert all(sampled_traces.values()) and all(unsampled_count.values()), decided
    # A request id sent to both sides is one trace id on both.
    for trace, sides in collections.Counter(t for side in SIDES for t in sampled_traces[side]).items():
        spans = spans_of(mesh, trace, HOPS * sides)
        for side in SIDES:
            if trace in sampled_traces[side]:
                assert_chain([s for s in spans if s.service.startswith(side)], trace, "",
                             services=(f"{side}-a", f"{side}-b"))
    # The filter saw every hop of the plain side and only the sampled hops of the gated ones; the
    # root twins routed the others, the composite delegated only the sampled. No unsampled trace
    # reached the collector.
    def seen_only_sampled(side, **gate):
        counts = dict(spans_started=HOPS * len(sampled_traces[side]), spans_sampled=HOPS * len(sampled_traces[side]))
        return dict(counts, **dict(dict(root_twin=0, caller_twin=0, delegated=0), **gate))
    expected = {
        "routes": seen_only_sampled("routes", root_twin=HOPS * unsampled_count["routes"]),
        "composite": seen_only_sampled("composite", delegated=HOPS * len(sampled_traces["composite"])),
        "plain": {"spans_started": HOPS * len(sent), "spans_sampled": HOPS * len(sampled_traces["plain"]),
                  "root_twin": 0, "caller_twin": 0, "delegated": 0},
    }
    after = settled(mesh)
    moved = {side: {key: after[side][key] - before[side][key] for key in after[side]} for side in SIDES}
    assert moved == expected
    unsampled_traces = {trace for side in SIDES for trace, sampled in decided[side] if not sampled}
    assert not [s for s in mesh.receiver.spans() if s.trace_id in unsampled_traces]


@pytest.mark.parametrize("request_id", ["2848A896-120D-48C5-9D4F-317EAF0BC7A6", "2848a896-120d-18c5-9d4f-317eaf0bc7a6",
                                        "req-42"], ids=["upper case", "version 1", "not a uuid"])
def test_a_request_id_the_filter_does_not_take_reaches_it_on_both_sides(mesh, request_id):
    path = f"/root-gate-other/{uuid.uuid4().hex}"
    for side in SIDES:
        assert mesh.get(f"{side}-a", path, {REQUEST_ID: request_id})[0] == 200
        first, second = seen(mesh, side, path)
        assert first[REQUEST_ID] == request_id
        # A random trace id, decided on, written: the gate let the request through.
        traceparent = first["traceparent"]
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[23]", traceparent), traceparent
        assert traceparent[3:35] != request_id.lower().replace("-", "")
        assert second["traceparent"][3:35] == traceparent[3:35]


@pytest.mark.parametrize("flags", ["01", "00"], ids=["sampled caller", "unsampled caller"])
def test_a_callers_context_is_continued_whatever_its_request_id(mesh, flags):
    """The root predicate applies only where no `traceparent` came: a caller's context, with a
    request id whose own new trace would not be sampled, is continued (sampled) or passed through
    (unsampled) on every side, as without the gate."""
    caller_span = "00f067aa0ba902b7"
    request_id = request_id_with_randomness(0)
    assert root_sampled(request_id, PERCENTAGE) is False
    trace = uuid.uuid4().hex
    traceparent = f"00-{trace}-{caller_span}-{flags}"
    path = f"/root-gate-caller/{uuid.uuid4().hex}"
    for side in SIDES:
        assert mesh.get(f"{side}-a", path, {REQUEST_ID: request_id, "traceparent": traceparent})[0] == 200
        first, second = seen(mesh, side, path)
        if flags == "00":
            assert first["traceparent"] == second["traceparent"] == traceparent, side
        else:
            assert first["traceparent"][:36] == f"00-{trace}-" and first["traceparent"].endswith("-01"), side
    if flags == "01":
        spans = spans_of(mesh, trace, HOPS * len(SIDES))
        for side in SIDES:
            assert_chain([s for s in spans if s.service.startswith(side)], trace, caller_span,
                         services=(f"{side}-a", f"{side}-b"))
