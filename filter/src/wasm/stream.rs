//! One HTTP stream: propagation on the request path, span recording at the end of the stream.

use super::host::{self, RequestHeaderWriter};
use super::metrics;
use super::plugin::{listener_kind, Plugin};
use super::root::Shared;
use crate::context::SpanContext;
use crate::envoy_flags;
use crate::http_span::{is_grpc, Exchange, RequestFields, SpanDecorations};
use crate::propagation::tracecontext::{self, Traceparent};
use crate::propagation::{Getter, HeaderBlock};
use crate::span::{FinishedSpan, Link, SpanKind};
use crate::span_facts::{FactsHeader, FactsQuery, SpanFacts};
use crate::traceparent_probe;
use crate::tracer::SpanStart;
use std::borrow::Cow;
use std::rc::Rc;

pub struct SidetraceStream {
    shared: Rc<Shared>,
    /// Present only while a sampled span is being recorded; boxed, so that the stream every
    /// request creates is a few words, not the few hundred bytes a recording holds.
    recording: Option<Box<Recording>>,
    /// The `traceresponse` value's ids, kept only when response headers are configured. Kept as
    /// ids, not text, so that the stream every request creates stays small enough to be moved
    /// without `memory.copy` (see `short_copy`).
    trace_response: Option<Traceparent>,
}

struct Recording {
    /// `None` until the end when the listener's direction is read with the span's other facts.
    kind: Option<SpanKind>,
    start: SpanStart,
    start_unix_nanos: u64,
    request: HeaderBlock,
    /// From the response's `:status`, read only when the facts are read one by one.
    status_code: Option<u32>,
    /// The response's `factsHeader` value, where the configuration names one.
    facts_header: Option<Vec<u8>>,
}

/// How many ended spans wait before they are recorded together (fewer where a batch is
/// smaller, so that a full batch is never held back). Recording a span (its name and attributes
/// built, then encoded into its batch) runs ~6,000 wasm instructions of code that no other part
/// of a request runs; one after the other, spans find that code still in the instruction cache,
/// which the request path between two streams' ends evicts.
const ENDED_RUN: usize = 16;

/// A span whose stream is over, with all it needs from the host but its facts. One whose facts
/// came in the route's facts header waits, with them, to be recorded with others
/// (`Shared::ended`).
pub struct EndedSpan {
    recording: Box<Recording>,
    end_unix_nanos: u64,
    kind: SpanKind,
    /// Envoy's response flags, short codes, read only for a failed exchange.
    response_flags: String,
}

/// Where a span's facts came from.
enum ReadFacts<'a> {
    /// The response's facts header, parsed: the span can wait to be recorded.
    Header(FactsHeader),
    /// Read from the host (evaluated, or one by one): the span is recorded at once, its facts
    /// borrowing from the host's answer.
    Host(SpanFacts<'a>),
}

/// What a request's start adds to the filter's counters.
#[derive(Clone, Copy)]
struct StartCount {
    sampled: bool,
    without_context: bool,
    /// Context headers that were malformed or not UTF-8.
    invalid: i64,
}

impl StartCount {
    /// A trusted caller's unsampled context, passed through.
    const UNSAMPLED_CALLER: StartCount = StartCount {
        sampled: false,
        without_context: false,
        invalid: 0,
    };

    /// A new trace, not sampled, for a request without context.
    const UNSAMPLED_ROOT: StartCount = StartCount {
        sampled: false,
        without_context: true,
        invalid: 0,
    };

    fn of(start: &SpanStart, unreadable: u32) -> Self {
        StartCount {
            sampled: start.is_sampled(),
            without_context: start.incoming.context.is_none(),
            invalid: start.incoming.invalid as i64 + unreadable as i64,
        }
    }
}

impl SidetraceStream {
    pub fn new(shared: Rc<Shared>) -> Self {
        SidetraceStream {
            shared,
            recording: None,
            trace_response: None,
        }
    }

    /// Publishes the stream's trace context where access logs can print it:
    /// `%FILTER_STATE(wasm.sidetrace.trace_id:PLAIN)%` and friends.
    fn publish_context(context: &SpanContext) {
        host::set_filter_state("sidetrace.trace_id", &context.trace_id.to_hex());
        host::set_filter_state("sidetrace.span_id", &context.span_id.to_hex());
        host::set_filter_state(
            "sidetrace.sampled",
            if context.is_sampled() { b"1" } else { b"0" },
        );
    }

    /// The span's facts from the proxy: from the response's facts header when the route added
    /// one and it holds them all (not a gRPC status or body sizes, known only at the end), else
    /// in one expression evaluation when the host has them compiled, else one attribute read
    /// each. Also settles a kind left for the end. `answer` keeps the host's buffer the facts
    /// borrow from.
    fn read_facts<'a>(
        &self,
        recording: &mut Recording,
        grpc: bool,
        answer: &'a mut Option<Vec<u8>>,
    ) -> (SpanKind, ReadFacts<'a>) {
        let plugin = &self.shared.plugin;
        let query = FactsQuery {
            kind: recording.kind,
            grpc,
            body_sizes: plugin.config.record_body_sizes,
        };
        if let (Some(kind), false, false) = (query.kind, grpc, query.body_sizes) {
            let facts_header = recording.facts_header.take();
            if let Some(header) = facts_header.and_then(|value| FactsHeader::parse(kind, value)) {
                return (kind, ReadFacts::Header(header));
            }
            if plugin.config.response_headers.facts_header.is_some() {
                metrics::count(|pending| pending.facts_header_unread += 1);
            }
        }
        *answer = plugin
            .facts_expression(&query)
            .and_then(host::expression_evaluate);
        let answered = answer
            .as_deref()
            .and_then(|answer| SpanFacts::decode(&query, answer));
        if let Some(facts) = answered {
            let kind = recording.kind.or(facts.kind).unwrap_or(SpanKind::Server);
            return (kind, ReadFacts::Host(facts));
        }
        metrics::count(|pending| pending.facts_read_one_by_one += 1);
        let kind = recording.kind.unwrap_or_else(|| Self::span_kind(plugin));
        let facts = Self::facts_one_by_one(kind, &query, recording.status_code);
        (kind, ReadFacts::Host(facts))
    }

    /// Each property read costs Envoy ~11,600 instructions (it hands the value over in a buffer
    /// it allocates by calling back into the VM): only what the span will carry is read.
    fn facts_one_by_one(
        kind: SpanKind,
        query: &FactsQuery,
        status: Option<u32>,
    ) -> SpanFacts<'static> {
        let text = |path: &[&str]| host::property_string(path).map(Cow::Owned);
        let is_client = kind == SpanKind::Client;
        let body_size = |path: [&str; 2]| {
            query
                .body_sizes
                .then(|| host::property_int(&path))
                .flatten()
        };
        SpanFacts {
            kind: None,
            status_code: status
                .or_else(|| host::property_int(&["response", "code"]).map(|c| c as u32)),
            protocol: text(&["request", "protocol"]),
            route_name: text(&["xds", "route_name"]),
            downstream_peer: (!is_client).then(|| text(&["source", "address"])).flatten(),
            upstream_address: is_client.then(|| text(&["upstream", "address"])).flatten(),
            upstream_cluster: is_client.then(|| text(&["xds", "cluster_name"])).flatten(),
            grpc_status: query
                .grpc
                .then(|| host::property_int(&["response", "grpc_status"]))
                .flatten()
                .map(|c| c as u32),
            request_body_size: body_size(["request", "size"]),
            response_body_size: body_size(["response", "size"]),
        }
    }

    /// The stream is over: what the span needs from the host is read now, while the stream's
    /// facts are readable. A span whose facts came in the facts header waits for
    /// `record_ended`; any other is recorded at once.
    fn end(&self, mut recording: Box<Recording>) {
        let shared = &self.shared;
        let end_unix_nanos = host::now_unix_nanos();
        let grpc = is_grpc(recording.request.get("content-type"));
        let mut answer = None;
        let (kind, facts) = self.read_facts(&mut recording, grpc, &mut answer);
        // A request without context is counted at the end when its span turns out a client.
        let without_context = recording.start.incoming.context.is_none();
        if recording.kind.is_none() && without_context && kind == SpanKind::Client {
            metrics::count(|pending| pending.outbound_without_context += 1);
        }
        let status_code = match &facts {
            ReadFacts::Header(header) => Some(header.status_code),
            ReadFacts::Host(facts) => facts.status_code,
        };
        let mut response_flags = String::new();
        if crate::http_span::flags_worth_reading(status_code) {
            if let Some(bits) = host::property_int(&["response", "flags"]) {
                envoy_flags::short_codes(bits as u64, &mut response_flags);
            }
        }
        let ended = EndedSpan {
            recording,
            end_unix_nanos,
            kind,
            response_flags,
        };
        let header = match facts {
            ReadFacts::Header(header) => header,
            ReadFacts::Host(facts) => {
                record(shared, &ended, &facts);
                shared.follow_exporter_pace();
                return;
            }
        };
        let run_complete = {
            let mut waiting = shared.ended.borrow_mut();
            waiting.push((ended, header));
            // A retired plugin's root no longer ticks: its spans are recorded (and counted as
            // dropped by its draining exporter) at once.
            let run = ENDED_RUN.min(shared.plugin.config.batch.max_export_batch_size);
            waiting.len() >= run || shared.exporter.borrow().is_draining()
        };
        if run_complete {
            record_ended(shared);
            shared.follow_exporter_pace();
        }
    }

    fn span_kind(plugin: &Plugin) -> SpanKind {
        plugin
            .kind
            .or_else(listener_kind)
            .unwrap_or(SpanKind::Server)
    }

    pub fn on_request_headers(&mut self) {
        if self.shared.plugin.probes_traceparent && self.settle_by_traceparent() {
            return;
        }
        let plugin = &self.shared.plugin;
        let (request, unreadable) = host::request_headers();
        let mut start = plugin
            .tracer
            .start(&request, &mut self.shared.ids.borrow_mut(), || {
                (host::now_unix_nanos() / 1_000_000_000) as u32
            });
        let excluded = plugin.is_excluded(|| request.get(":path"));
        let (kind, recorded) = self.count_start(StartCount::of(&start, unreadable), excluded);
        let mut writer = RequestHeaderWriter::new(&request, unreadable);
        plugin.tracer.propagate(&mut start, &mut writer);
        self.announce(&start.context);

        if recorded && start.is_sampled() {
            self.recording = Some(Box::new(Recording {
                kind,
                start,
                start_unix_nanos: host::now_unix_nanos(),
                request,
                status_code: None,
                facts_header: None,
            }));
        }
    }

    /// Settles an unsampled request from its `traceparent` alone (`traceparent_probe`); false
    /// when the request is sampled and its span needs the whole header map. The two requests a
    /// sidecar sees most, an unsampled caller's and one without context that starts an unsampled
    /// trace, take the shortcuts that build no start.
    fn settle_by_traceparent(&mut self) -> bool {
        let plugin = &self.shared.plugin;
        let name = tracecontext::HEADERS[0];
        let Some(value) = host::request_header(name) else {
            // No root here is a sampled one (or, were the tracer's formats more than W3C, one
            // `unsampled_root` declines): the whole request decides it, with the same ids.
            let root = traceparent_probe::unsampled_root(
                &plugin.tracer,
                &mut self.shared.ids.borrow_mut(),
            );
            let Some(root) = root else {
                return false;
            };
            tracecontext::inject(&root, &mut RequestHeaderWriter::after_lookup(name, false));
            self.count_start(StartCount::UNSAMPLED_ROOT, false);
            self.announce(&root);
            return true;
        };
        if let Some(caller) = traceparent_probe::unsampled_caller(&plugin.tracer, &value) {
            // Passed through untouched: nothing to write.
            self.count_start(StartCount::UNSAMPLED_CALLER, false);
            self.announce(&caller);
            return true;
        }
        let (looked_up, unreadable) = HeaderBlock::single(name, value);
        let settled = traceparent_probe::settle(
            &plugin.tracer,
            &looked_up,
            &mut self.shared.ids.borrow_mut(),
        );
        let Some(mut start) = settled else {
            return false;
        };
        let mut writer = RequestHeaderWriter::after_lookup(name, true);
        plugin.tracer.propagate(&mut start, &mut writer);
        self.count_start(StartCount::of(&start, unreadable), false);
        self.announce(&start.context);
        true
    }

    /// Counts the request in the filter's metrics, and settles what its span's kind is (`None`
    /// when it is left to the end) and whether the span is recorded if sampled.
    fn count_start(&self, start: StartCount, excluded: bool) -> (Option<SpanKind>, bool) {
        let plugin = &self.shared.plugin;
        let StartCount {
            sampled,
            without_context,
            invalid,
        } = start;
        // The listener's direction costs a host call when the config leaves it to the listener:
        // it is read only when something depends on it (a span to record, the count of outbound
        // calls without context, a match mode). An unsampled request with context needs none. A
        // span recorded whatever its kind reads it at the end, with its other facts, in one call.
        let recorded_whatever_kind = plugin.records_whatever_kind();
        let kind_at_end =
            sampled && recorded_whatever_kind == Some(true) && !excluded && plugin.kind_can_wait();
        let kind = (!kind_at_end
            && (sampled || without_context || recorded_whatever_kind.is_none()))
        .then(|| Self::span_kind(plugin));
        let orphan = without_context && kind == Some(SpanKind::Client);
        let recorded = kind_at_end
            || kind.map_or(recorded_whatever_kind == Some(true), |kind| {
                plugin.records(kind)
            }) && !excluded;
        metrics::count(|pending| {
            pending.invalid_context += invalid;
            pending.outbound_without_context += orphan as i64;
            pending.spans_started += recorded as i64;
        });
        (kind, recorded)
    }

    /// Hands the stream's context to access logs and the response, where configured.
    fn announce(&mut self, context: &SpanContext) {
        let plugin = &self.shared.plugin;
        if plugin.config.publish_filter_state {
            Self::publish_context(context);
        }
        let response_headers = &plugin.config.response_headers;
        if response_headers.traceresponse || response_headers.trace_id_header.is_some() {
            self.trace_response = Some(Traceparent::of(context));
        }
    }

    pub fn on_response_headers(&mut self) {
        let plugin = &self.shared.plugin;
        if let Some(name) = &plugin.config.response_headers.facts_header {
            // The header must never leave the sidecar: a recorded span's facts are looked up,
            // and every response's header removed (an unsampled one's without looking), unless
            // Envoy drops it after the filters.
            if let Some(recording) = self.recording.as_mut() {
                recording.facts_header = host::response_header(name);
            }
            if plugin.removes_facts_header {
                host::remove_response_header(name);
            }
        }
        if let Some(recording) = self.recording.as_mut().filter(|_| plugin.facts.is_none()) {
            recording.status_code = host::response_status();
        }
        let Some(text) = self.trace_response.as_ref().map(Traceparent::format) else {
            return;
        };
        let value = text.as_str();
        let response_headers = &plugin.config.response_headers;
        if response_headers.traceresponse {
            host::set_response_header("traceresponse", value);
        }
        if let Some(name) = &response_headers.trace_id_header {
            // The trace id is the second field of a version-00 traceparent.
            host::set_response_header(name, &value[3..35]);
        }
    }

    /// The stream is over (after Envoy's access log): its span, if recorded, is finished.
    pub fn on_done(&mut self) {
        if let Some(recording) = self.recording.take() {
            self.end(recording);
        }
    }
}

/// Records every span waiting in `shared.ended`: its name and attributes built, encoded into
/// its batch and queued. Called when `ENDED_RUN` have ended, by each tick, and when a plugin
/// retires.
pub fn record_ended(shared: &Shared) {
    let mut run = std::mem::take(&mut *shared.ended.borrow_mut());
    for (ended, header) in run.drain(..) {
        record(shared, &ended, &header.facts());
    }
    // The emptied list goes back, for its allocation, unless spans ended while recording.
    let mut waiting = shared.ended.borrow_mut();
    if waiting.is_empty() {
        *waiting = run;
    }
}

/// Builds the span's name and attributes, encodes it into its batch and queues it. Out of line:
/// a span is recorded from its stream's end or from a run of them.
#[inline(never)]
fn record(shared: &Shared, ended: &EndedSpan, facts: &SpanFacts) {
    let plugin = &shared.plugin;
    let EndedSpan {
        recording,
        end_unix_nanos,
        kind,
        response_flags,
    } = ended;
    let (end_unix_nanos, kind) = (*end_unix_nanos, *kind);
    let fields = RequestFields::of_block(&recording.request);
    let exchange = Exchange {
        kind,
        request: &recording.request,
        fields,
        route_name: facts.route_name.as_deref(),
        protocol: facts.protocol.as_deref(),
        status_code: facts.status_code,
        grpc_status: facts.grpc_status,
        response_flags,
        downstream_peer: facts.downstream_peer.as_deref(),
        upstream_address: facts.upstream_address.as_deref(),
        upstream_cluster: facts.upstream_cluster.as_deref(),
        request_body_size: facts.request_body_size,
        response_body_size: facts.response_body_size,
    };
    let baggage_values: Vec<(&str, &str)> = match &recording.start.incoming.baggage {
        Some(baggage) => plugin
            .baggage_attributes
            .iter()
            .filter_map(|(key, name)| baggage.get(key).map(|value| (name.as_str(), value)))
            .collect(),
        None => Vec::new(),
    };
    let decorations = SpanDecorations {
        record_query: plugin.config.record_query,
        fixed_tags: &plugin.fixed_tags,
        header_tags: &plugin.header_tags,
        baggage: &baggage_values,
    };
    // The worker's buffers from the span before: two allocations a span saved.
    let (attribute_buffer, mut name) = shared.scratch.take();
    let mut attributes = recycle(attribute_buffer);
    exchange.attributes(&decorations, &mut attributes);
    crate::route::span_name(
        exchange.method(),
        exchange.route_name,
        exchange.path(),
        &mut name,
    );
    let (status, status_message) = exchange.status();

    let context = &recording.start.context;
    let links: Vec<Link> = recording
        .start
        .link
        .iter()
        .map(|external| Link {
            trace_id: external.trace_id,
            span_id: external.span_id,
            trace_state: external.trace_state.as_str(),
            sampled: external.is_sampled(),
        })
        .collect();
    let span = FinishedSpan {
        trace_id: context.trace_id,
        span_id: context.span_id,
        parent_span_id: recording.start.parent,
        parent_is_remote: recording.start.parent.is_some(),
        trace_state: context.trace_state.as_str(),
        sampled: true,
        random: context.random,
        name: &name,
        kind,
        start_unix_nanos: recording.start_unix_nanos,
        end_unix_nanos: end_unix_nanos.max(recording.start_unix_nanos),
        attributes: &attributes,
        links: &links,
        status,
        status_message: &status_message,
    };
    // Counters follow on the next tick, with the per-request ones: two metric calls per
    // span saved.
    shared.exporter.borrow_mut().enqueue(|batch| {
        crate::otlp::append_span(batch, |out| {
            crate::otlp::encode_span(&span, &plugin.limits, out)
        })
    });
    attributes.clear();
    shared.scratch.set((recycle(attributes), name));
}

/// An empty vector's allocation, for elements of another lifetime (or any type of the same
/// size and alignment): collected in place, so nothing is allocated.
fn recycle<T, U>(empty: Vec<T>) -> Vec<U> {
    empty.into_iter().filter_map(|_| None).collect()
}
