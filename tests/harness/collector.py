"""A real OTLP/gRPC trace receiver, decoding with the independent `opentelemetry-proto` package.
Fault switches let tests play a collector that fails, throttles, hangs or partially rejects."""
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from .polling import poll

KINDS = {trace_pb2.Span.SPAN_KIND_SERVER: "SERVER", trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@dataclass
class Span:
    resource: dict
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    name: str
    attributes: dict
    status: str
    status_message: str
    start_ns: int
    end_ns: int
    flags: int
    links: list = field(default_factory=list)
    trace_state: str = ""

    @property
    def service(self) -> str:
        return self.resource.get("service.name", "?")

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver):
        self.receiver = receiver

    def Export(self, request, context):
        r = self.receiver
        with r.lock:
            r.requests += 1
            # grpcio keeps the request's :authority only on a private field; best effort.
            host = getattr(getattr(getattr(context, "_rpc_event", None), "call_details", None), "host", None)
            if host is not None:
                r.authorities.add(host.decode() if isinstance(host, bytes) else host)
            fault = r.fault
        if fault and fault[0] == "hang":
            # A collector that never answers in time: the client has given up, nothing is kept.
            time.sleep(fault[1])
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "answered too late")
        if fault and fault[0] == "fail":
            _, code, retry_after = fault
            with r.lock:
                r.refused_requests += 1
                r.refused_spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            if retry_after is not None:
                info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(retry_after), nanos=int(retry_after % 1 * 1e9)))
                detail = status_pb2.Status(code=code.value[0], message="throttled")
                detail.details.add().Pack(info)
                context.set_trailing_metadata((("grpc-status-details-bin", detail.SerializeToString()),))
            context.abort(code, "refused by test receiver")
        rejected = fault[1] if fault and fault[0] == "partial" else 0
        if r.count_only:
            # grpcio has already parsed the message with opentelemetry-proto; counting is all a
            # throughput benchmark needs, and keeps the receiver from being the bottleneck.
            count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with r.lock:
                r.counted += count
                r.batches.append(count)
            return trace_service_pb2.ExportTraceServiceResponse()
        spans = [s for s in self._decode(request)]
        accepted = spans[rejected:] if rejected else spans
        with r.lock:
            r._spans.extend(accepted)
            r.rejected_spans += len(spans) - len(accepted)
            r.batches.append(len(spans))
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = min(rejected, len(spans))
            response.partial_success.error_message = "test rejection"
        return response

    @staticmethod
    def _decode(request):
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    yield Span(
                        resource=resource,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        kind=KINDS.get(s.kind, str(s.kind)),
                        name=s.name,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        status=STATUS.get(s.status.code, str(s.status.code)),
                        status_message=s.status.message,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        flags=s.flags,
                        links=[(l.trace_id.hex(), l.span_id.hex()) for l in s.links],
                        trace_state=s.trace_state,
                    )


class OtlpReceiver:
    """`with OtlpReceiver() as receiver:` serves TraceService/Export on 127.0.0.1:`receiver.port`."""

    def __init__(self, port: int = 0, count_only: bool = False):
        self.lock = threading.Lock()
        self.count_only = count_only
        self.counted = 0
        self._spans = []
        self.batches = []
        self.requests = 0
        self.refused_requests = 0
        self.refused_spans = 0
        self.rejected_spans = 0
        self.authorities = set()
        self.fault = None
        self._requested_port = port
        self.server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        # Port reuse lets a restarted receiver come back on the port the sidecars export to.
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 1)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self._requested_port}")
        self._requested_port = self.port
        self.server.start()

    def stop(self):
        if self.server:
            self.server.stop(grace=0).wait()
            self.server = None

    # Fault switches.
    def healthy(self):
        self.fault = None

    def fail_with(self, code: grpc.StatusCode, retry_after: float = None):
        self.fault = ("fail", code, retry_after)

    def hang(self, seconds: float):
        self.fault = ("hang", seconds)

    def partial_success(self, rejected: int):
        self.fault = ("partial", rejected)

    def spans(self) -> list:
        with self.lock:
            return list(self._spans)

    def span_count(self) -> int:
        with self.lock:
            return self.counted if self.count_only else len(self._spans)

    def clear(self):
        with self.lock:
            self._spans.clear()
            self.batches.clear()
            self.counted = 0

    def wait_for_spans(self, count: int, timeout: float = 10.0, predicate=None) -> list:
        return poll(lambda: [s for s in self.spans() if predicate is None or predicate(s)],
                    lambda spans: len(spans) >= count, timeout)

    def traces(self) -> dict:
        grouped = {}
        for span in self.spans():
            grouped.setdefault(span.trace_id, []).append(span)
        return grouped
