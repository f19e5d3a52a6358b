"""recordUnsampled in real Envoy: at 0 % head sampling, a three-service mesh records every span
on a failing or slow request's path, linked into one trace, and nothing for a healthy one."""
import time

import pytest

from harness import sidecar_config
from harness.mesh import Mesh

TOPOLOGY = {"frontend": ["checkout"], "checkout": ["payments"], "payments": []}
# Below the slow path's last hop (`apps.SLOW_SECONDS`), well above a healthy exchange on loopback.
SLOWER_THAN_MS = 400


def filter_config(service):
    return sidecar_config.default_filter_config(
        randomSamplingPercentage=0,
        recordUnsampled={"onError": True, "slowerThanMs": SLOWER_THAN_MS},
    )


@pytest.fixture(scope="module")
def mesh():
    with Mesh(TOPOLOGY, filter_config=filter_config) as mesh:
        yield mesh


def path_spans(mesh, path, count):
    """The `count` spans recorded for `path`, all of one trace."""
    spans = mesh.receiver.wait_for_spans(
        count, timeout=10, predicate=lambda s: s.attributes.get("url.path") == path)
    assert len(spans) == count, [(s.service, s.kind, s.name) for s in spans]
    assert len({s.trace_id for s in spans}) == 1, "one linked trace"
    return spans


def assert_linked_path(spans):
    """frontend SERVER → CLIENT → checkout SERVER → CLIENT → payments SERVER, each the parent
    of the next."""
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if s.parent_span_id not in by_id]
    assert len(roots) == 1 and roots[0].service == "frontend" and roots[0].kind == "SERVER"
    chain = [roots[0]]
    while True:
        children = [s for s in spans if s.parent_span_id == chain[-1].span_id]
        if not children:
            break
        assert len(children) == 1
        chain.append(children[0])
    assert [(s.service, s.kind) for s in chain] == [
        ("frontend", "SERVER"), ("frontend", "CLIENT"), ("checkout", "SERVER"),
        ("checkout", "CLIENT"), ("payments", "SERVER")]
    for span in spans:
        assert span.flags & 0x1 == 0, "the head decision stays unsampled"
    return chain


def test_a_request_failing_at_the_last_service_records_its_whole_path(mesh):
    status, _ = mesh.get("frontend", "/checkout/pay/fail")
    assert status == 502
    chain = assert_linked_path(path_spans(mesh, "/checkout/pay/fail", 5))
    for span in chain:
        assert span.status == "ERROR", (span.service, span.kind)
        assert span.attributes["sidetrace.recorded_because"] == "error"
    assert chain[-1].attributes["http.response.status_code"] == 503


def test_a_slow_request_records_its_path(mesh):
    status, _ = mesh.get("frontend", "/checkout/browse/slow")
    assert status == 200
    chain = assert_linked_path(path_spans(mesh, "/checkout/browse/slow", 5))
    for span in chain:
        assert span.attributes["sidetrace.recorded_because"] == "slow"
        assert span.duration_ms > SLOWER_THAN_MS
        assert span.status == "UNSET"


def test_a_healthy_fast_request_records_nothing(mesh):
    # Counts of earlier requests reach Envoy on the filters' ticks.
    time.sleep(0.5)
    before = mesh.stats()
    status, _ = mesh.get("frontend", "/checkout/cart/7")
    assert status == 200
    # Its three sidecars have counted it once their ticks ran.
    stats = mesh.wait_for_stats(
        lambda stats: stats.get("spans_started", 0) >= before.get("spans_started", 0) + 5)
    assert stats.get("spans_recorded_unsampled", 0) == before.get("spans_recorded_unsampled", 0)
    assert not [s for s in mesh.receiver.spans() if s.attributes.get("url.path") == "/checkout/cart/7"]
