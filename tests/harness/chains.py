"""What one request's trace looks like across a two-hop mesh (svc-a calling svc-b): its spans,
by role, and the parent links and timings that make them one connected chain."""


def spans_of(mesh, trace_id, count):
    spans = mesh.receiver.wait_for_spans(count, timeout=15, predicate=lambda s: s.trace_id == trace_id)
    assert len(spans) == count, f"expected {count} spans for {trace_id}, got {[(s.service, s.kind) for s in spans]}"
    return spans


def by_role(spans):
    roles = {(s.service, s.kind): s for s in spans}
    assert len(roles) == len(spans), f"duplicate roles: {[(s.service, s.kind) for s in spans]}"
    return roles


def assert_chain(spans, trace_id, caller_span, services=("svc-a", "svc-b")):
    a, b = services
    roles = by_role(spans)
    assert set(roles) == {(a, "SERVER"), (a, "CLIENT"), (b, "SERVER")}
    server_a, client_a, server_b = roles[a, "SERVER"], roles[a, "CLIENT"], roles[b, "SERVER"]
    assert {s.trace_id for s in spans} == {trace_id}
    assert server_a.parent_span_id == caller_span
    assert client_a.parent_span_id == server_a.span_id
    assert server_b.parent_span_id == client_a.span_id
    assert len({s.span_id for s in spans}) == 3
    assert server_a.start_ns <= client_a.start_ns <= server_b.start_ns
    # Each span ends when its own Envoy lets go of the stream, after the response's last byte has
    # left it: the hop that received that byte may get there first.
    assert server_b.end_ns <= client_a.end_ns + 5_000_000
    assert client_a.end_ns <= server_a.end_ns + 5_000_000
    return server_a, client_a, server_b
