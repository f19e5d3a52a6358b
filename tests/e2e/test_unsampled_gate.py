"""The unsampled gate in real Envoy (`harness.unsampled_gate`): three W3C-only meshes side by side,
the filter behind route twins, behind the composite filter, and with no gate, get the same
requests. Every app must see the same trace headers and every malformed context must be counted
the same; only the requests a gate skips go unseen by the filter, and Envoy counts them (the
route twins' stats) or the others (the composite's delegations)."""
import http.client
import re
import time
import uuid

import pytest

from harness import facts_header
from harness.chains import assert_chain, spans_of
from harness.mesh import Mesh
from harness.polling import steady
from harness.sidecar_config import default_filter_config
from harness.unsampled_gate import TWIN_STAT_PREFIX, check_applies, delegation_stat

HOPS = 3  # a's inbound, a's outbound, b's inbound
GATES = ("routes", "composite")
SIDES = GATES + ("plain",)
CALLER_SPAN = "00f067aa0ba902b7"
W3C_ONLY = {"extract": ["tracecontext", "baggage"], "inject": ["tracecontext", "baggage"]}


@pytest.fixture(scope="module")
def mesh():
    config = default_filter_config(randomSamplingPercentage=0, propagation=W3C_ONLY, excludePaths=[],
                                   publishFilterState=False)
    topology = {f"{side}-{hop}": ([f"{side}-b"] if hop == "a" else []) for side in SIDES for hop in "ab"}
    with Mesh(topology, filter_config=lambda _name: config,
              gate_unsampled=lambda name: next((gate for gate in GATES if name.startswith(gate)), None)) as mesh:
        yield mesh


# (case, traceparent values sent, what the first app sees, hops the filter runs at behind a gate
# (per gate where they differ), malformed contexts counted). "as sent": untouched; "child": the
# caller's trace with this hop's span; "new root": another trace, unsampled. A new root's app
# forwards an unsampled context, so the gate skips the hops after the first.
CASES = [
    ("unsampled caller", lambda t: [f"00-{t}-{CALLER_SPAN}-00"], "as sent", 0, 0),
    ("unsampled caller, random flag", lambda t: [f"00-{t}-{CALLER_SPAN}-02"], "as sent", 0, 0),
    ("lowest non-zero ids", lambda t: ["00-00000000000000000000000000000001-0000000000000001-00"], "as sent", 0, 0),
    ("sampled caller", lambda t: [f"00-{t}-{CALLER_SPAN}-01"], "child", HOPS, 0),
    ("sampled caller, random flag", lambda t: [f"00-{t}-{CALLER_SPAN}-03"], "child", HOPS, 0),
    ("no context", lambda t: [], "new root", 1, 0),
    ("trace id all zero", lambda t: [f"00-{'0' * 32}-{CALLER_SPAN}-00"], "new root", 1, 1),
    ("span id all zero", lambda t: [f"00-{t}-0000000000000000-00"], "new root", 1, 1),
    ("upper-case hex", lambda t: [f"00-{t.upper()}-{CALLER_SPAN}-00"], "new root", 1, 1),
    ("a byte too many", lambda t: [f"00-{t}-{CALLER_SPAN}-00-"], "new root", 1, 1),
    ("version ff", lambda t: [f"ff-{t}-{CALLER_SPAN}-00"], "new root", 1, 1),
    # The composite's header input joins the two, so it lets the request through, and the filter,
    # looking `traceparent` up alone at this sampling, is handed the first and passes it on. A
    # route matches each value on its own, so the route twin skips the request.
    ("two traceparent headers", lambda t: [f"00-{t}-{CALLER_SPAN}-00"] * 2, "as sent",
     {"routes": 0, "composite": 1}, 0),
]


def send(mesh, service, path, traceparents, extra):
    """One GET through the service's inbound sidecar; `traceparents` may repeat the header."""
    connection = http.client.HTTPConnection("127.0.0.1", mesh.pods[service].inbound_port, timeout=15)
    try:
        connection.putrequest("GET", path)
        for value in traceparents:
            connection.putheader("traceparent", value)
        for name, value in extra.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def seen_by(mesh, service, path):
    return mesh.pods[service].app.headers_for(path)


def classify(sent, seen):
    traceparent = seen.get("traceparent", "")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]", traceparent), traceparent
    if sent and traceparent == sent[0]:
        return "as sent"
    if len(sent) == 1 and traceparent[3:35] == sent[0][3:35]:
        return "child"
    return "new root"


def counters(mesh, side):
    """The filter's counters, the composite's delegations and the requests routed by the route
    twins, summed over one side's sidecars."""
    total = {"spans_started": 0, "spans_sampled": 0, "invalid_context": 0, "delegated": 0, "twin_routed": 0}
    for name, pod in mesh.pods.items():
        if not name.startswith(side):
            continue
        stats = pod.envoy.stats()
        for key in ("spans_started", "spans_sampled", "invalid_context"):
            total[key] += stats.get(f"wasmcustom.sidetrace.{key}", 0)
        total["delegated"] += sum(stats.get(delegation_stat(listener), 0)
                                  for listener in ("inbound", "outbound"))
        total["twin_routed"] += sum(value for stat, value in stats.items()
                                    if stat.endswith(f".route.{TWIN_STAT_PREFIX}.upstream_rq_total"))
    return total


def settled_counters(mesh):
    """Both sides' counters once a previous case's last tick has landed: two reads agree across
    more than a tick (once a second with nothing to export)."""
    return steady(lambda: {side: counters(mesh, side) for side in SIDES})


def wait_for_counters(mesh, expected, before, timeout=5.0):
    """Counters reach Envoy on the filter's tick; poll until both sides show what is expected."""
    deadline = time.time() + timeout
    while True:
        moved = {side: {k: v - before[side][k] for k, v in counters(mesh, side).items()} for side in SIDES}
        if moved == expected or time.time() > deadline:
            return moved
        time.sleep(0.05)


@pytest.mark.parametrize("case, traceparents, first_app_sees, filter_hops, malformed", CASES,
                         ids=[case[0] for case in CASES])
def test_the_gate_changes_nothing_an_app_or_a_counter_sees_but_the_skipped_work(
        mesh, case, traceparents, first_app_sees, filter_hops, malformed):
    trace = uuid.uuid4().hex
    sent = traceparents(trace)
    extra = {"tracestate": "vendor=opaque", "baggage": "tenant=a"}
    before = settled_counters(mesh)
    path = f"/gate/{uuid.uuid4().hex}"
    seen = {}
    for side in SIDES:
        assert send(mesh, f"{side}-a", path, sent, extra) == 200
        seen[side] = (seen_by(mesh, f"{side}-a", path), seen_by(mesh, f"{side}-b", path))

    for side in SIDES:
        first, second = seen[side]
        assert classify(sent, first) == first_app_sees, side
        if first_app_sees == "as sent":
            assert (first.get("tracestate"), first.get("baggage")) == (extra["tracestate"], extra["baggage"]), side
        if first_app_sees == "new root":
            assert first["traceparent"].endswith(("-00", "-02")), "0 % sampling: a new trace is unsampled"
            assert "tracestate" not in first, "a tracestate loses its traceparent's context with it"
        if first_app_sees != "child":
            assert second["traceparent"] == first["traceparent"], "the callee continues what the app forwarded"

    sampled = HOPS if first_app_sees == "child" else 0
    # Envoy matches the route again once the filter has written `traceparent`, so a new unsampled
    # trace started here leaves by the twin as well: the twins count every request that left
    # with an unsampled context.
    hops = filter_hops if isinstance(filter_hops, dict) else dict.fromkeys(GATES, filter_hops)
    twin_routed = HOPS if first_app_sees == "new root" else HOPS - hops["routes"]
    common = {"spans_sampled": sampled, "invalid_context": malformed}
    expected = {
        "routes": dict(common, spans_started=hops["routes"], delegated=0, twin_routed=twin_routed),
        "composite": dict(common, spans_started=hops["composite"], delegated=hops["composite"], twin_routed=0),
        "plain": dict(common, spans_started=HOPS, delegated=0, twin_routed=0),
    }
    assert wait_for_counters(mesh, expected, before) == expected
    if first_app_sees == "child":
        # Behind a gate each listener has its own plugin with its direction set: the spans must
        # still be a SERVER, a CLIENT and a SERVER, linked as without a gate.
        spans = spans_of(mesh, trace, len(SIDES) * HOPS)
        for side in SIDES:
            assert_chain([s for s in spans if s.service.startswith(side)], trace, CALLER_SPAN,
                         services=(f"{side}-a", f"{side}-b"))


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("flags, skipped", [("00", True), ("01", False)], ids=["skipped", "let through"])
def test_a_gated_sidecars_access_log_names_the_context_each_request_left_with(mesh, gate, flags, skipped):
    sent = [f"00-{uuid.uuid4().hex}-{CALLER_SPAN}-{flags}"]
    path = f"/gate-log/{uuid.uuid4().hex}"
    assert send(mesh, f"{gate}-a", path, sent, {}) == 200
    seen = seen_by(mesh, f"{gate}-a", path)["traceparent"]
    assert (seen == sent[0]) == skipped
    lines = mesh.pods[f"{gate}-a"].wait_for_access_log(path, count=2)
    inbound = [line for line in lines if "direction=inbound" in line]
    assert len(inbound) == 1, lines
    assert f"traceparent={seen} " in inbound[0], "the parent the app saw: the caller's, or this hop's span"


def test_the_gate_is_refused_where_the_filter_does_work_for_an_unsampled_caller():
    w3c = default_filter_config(propagation=W3C_ONLY, publishFilterState=False)
    check_applies(w3c)
    # Envoy drops this one from every response, skipped requests' too.
    check_applies(dict(w3c, direction="inbound", responseHeaders={"factsHeader": facts_header.NAME}))
    refused = [
        ("propagation.extract", dict(w3c, propagation={"extract": ["tracecontext", "b3"], "inject": ["tracecontext"]})),
        ("propagation.inject", dict(w3c, propagation={"extract": ["tracecontext"], "inject": ["baggage"]})),
        ("propagation.extract", default_filter_config(publishFilterState=False)),
        ("trustIncomingContext", dict(w3c, trustIncomingContext=False)),
        ("publishFilterState", dict(w3c, publishFilterState=True)),
        ("responseHeaders", dict(w3c, responseHeaders={"traceresponse": True})),
        ("responseHeaders", dict(w3c, responseHeaders={"traceIdHeader": "x-trace-id"})),
        ("responseHeaders.factsHeader", dict(w3c, direction="inbound", responseHeaders={"factsHeader": "x-facts"})),
    ]
    for field, config in refused:
        with pytest.raises(ValueError, match=re.escape(field)):
            check_applies(config)
