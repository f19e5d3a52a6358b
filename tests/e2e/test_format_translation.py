"""A mesh of mixed tracers keeps one trace: a B3 caller reaching an X-Ray-only callee."""
import uuid

from harness.mesh import Mesh
from harness.sidecar_config import default_filter_config

CALLER_SPAN = "e457b5a2e4d86bd1"


def test_b3_caller_reaches_an_xray_callee_in_one_trace():
    configs = {
        "zipkin-app": default_filter_config(propagation={"extract": ["b3"], "inject": ["b3", "xray"]}),
        "aws-app": default_filter_config(propagation={"extract": ["xray"], "inject": ["xray"]}),
    }
    with Mesh({"zipkin-app": ["aws-app"], "aws-app": []}, filter_config=configs.__getitem__) as mesh:
        trace_id = uuid.uuid4().hex
        status, _ = mesh.get("zipkin-app", "/checkout", {"b3": f"{trace_id}-{CALLER_SPAN}-1"})
        assert status == 200
        spans = mesh.receiver.wait_for_spans(3, timeout=15, predicate=lambda s: s.trace_id == trace_id)
        roles = {(s.service, s.kind): s for s in spans}
        assert set(roles) == {("zipkin-app", "SERVER"), ("zipkin-app", "CLIENT"), ("aws-app", "SERVER")}
        assert roles["zipkin-app", "SERVER"].parent_span_id == CALLER_SPAN
        assert roles["aws-app", "SERVER"].parent_span_id == roles["zipkin-app", "CLIENT"].span_id

        _, seen_a = mesh.pods["zipkin-app"].app.seen_headers[-1]
        server_a = roles["zipkin-app", "SERVER"]
        assert seen_a["b3"] == f"{trace_id}-{server_a.span_id}-1"
        assert seen_a["x-amzn-trace-id"] == f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={server_a.span_id};Sampled=1"
        assert "traceparent" not in seen_a, "tracecontext is not configured on this sidecar"

        _, seen_b = mesh.pods["aws-app"].app.seen_headers[-1]
        server_b = roles["aws-app", "SERVER"]
        assert seen_b["x-amzn-trace-id"] == f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={server_b.span_id};Sampled=1"


def test_xray_roots_carry_epoch_seconds_when_xray_is_injected():
    import time
    configs = {"aws-edge": default_filter_config(propagation={"extract": ["xray"], "inject": ["xray", "tracecontext"]})}
    with Mesh({"aws-edge": []}, filter_config=configs.__getitem__) as mesh:
        before = int(time.time())
        status, _ = mesh.get("aws-edge", "/new")
        assert status == 200
        spans = mesh.receiver.wait_for_spans(1, timeout=15)
        epoch = int(spans[0].trace_id[:8], 16)
        assert before - 5 <= epoch <= int(time.time()) + 5, spans[0].trace_id


def test_an_unsampled_context_written_in_every_format_crosses_the_mesh_untouched():
    """Sidecars with the default formats write W3C and B3 alike; apps forward both. An unsampled
    caller's context that arrives written that way reaches every app as it came, at each hop (the
    sidecars record nothing, so there is no span to name); where its B3 names another span, B3 is
    rewritten to the context the sidecar continues, W3C's, first in extraction order."""
    config = default_filter_config(randomSamplingPercentage=0)
    with Mesh({"svc-a": ["svc-b"], "svc-b": []}, filter_config=lambda _name: config) as mesh:
        trace_id = uuid.uuid4().hex
        sent = {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-00", "x-b3-traceid": trace_id,
                "x-b3-spanid": CALLER_SPAN, "x-b3-sampled": "0"}
        status, _ = mesh.get("svc-a", "/as-written", sent)
        assert status == 200
        for service in ("svc-a", "svc-b"):
            seen = mesh.pods[service].app.headers_for("/as-written")
            assert {name: seen.get(name) for name in sent} == sent, f"{service}: {seen}"

        other = dict(sent, **{"x-b3-spanid": "1111111111111111"})
        status, _ = mesh.get("svc-a", "/b3-elsewhere", other)
        assert status == 200
        seen = mesh.pods["svc-a"].app.headers_for("/b3-elsewhere")
        assert seen["traceparent"] == sent["traceparent"]
        assert (seen["x-b3-traceid"], seen["x-b3-spanid"], seen["x-b3-sampled"]) == (trace_id, CALLER_SPAN, "0")
