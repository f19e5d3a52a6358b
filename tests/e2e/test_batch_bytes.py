"""A batch's request stays under the 4 MiB a gRPC server takes by default: the receiver here, like
the OpenTelemetry Collector's OTLP receiver, refuses a larger message with RESOURCE_EXHAUSTED and
no retry hint. Spans large enough that `maxExportBatchSize` of them would make one ~8 MB request
leave in several, every one accepted, none dropped."""
import yaml

from harness import sidecar_config
from harness.apps import App
from harness.collector import OtlpReceiver
from harness.envoy import Envoy
from harness.ports import free_port

REQUESTS = 20
TAG_BYTES = 25_000
# ~400 KB a span: eight fill a batch's 3 MiB; twenty would be one ~8 MB request.
TAGS = 16


def test_spans_too_large_for_one_request_leave_in_several_all_accepted():
    virtual_hosts = [{"name": "inbound", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]
    config = sidecar_config.default_filter_config(
        maxTagLength=TAG_BYTES,
        customTags={f"payload.{i}": {"header": {"name": "x-payload"}} for i in range(TAGS)},
        # The spans short of a full batch leave on the schedule, after the full ones.
        batch={"maxExportBatchSize": 512, "scheduledDelayMs": 2000},
    )
    with OtlpReceiver() as receiver:
        port, admin = free_port(), free_port()
        bootstrap = sidecar_config.inbound_only("batch-bytes", port, admin, virtual_hosts, config, receiver.port)
        with Envoy(yaml.safe_dump(bootstrap), "batch-bytes") as envoy:
            for _ in range(REQUESTS):
                status, _ = App.fetch(port, "/upload", {"x-payload": "p" * TAG_BYTES})
                assert status == 200
            spans = receiver.wait_for_spans(REQUESTS, timeout=15)
            stats = envoy.wait_for_sidetrace_stats(lambda s: s.get("spans_exported", 0) >= REQUESTS)
    assert len(spans) == REQUESTS, stats
    assert all(len(span.attributes["payload.0"]) == TAG_BYTES for span in spans)
    assert stats.get("export_failures", 0) == 0, stats
    assert stats.get("spans_dropped", 0) == 0, stats
    assert stats.get("export_requests", 0) >= 3, stats
