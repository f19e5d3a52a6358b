//! The pure part of a request's work, in a loop, for a native profiler:
//! `valgrind --tool=callgrind target/release/examples/request_path [w3c|all] [span]` shows where
//! the instructions go (the same code runs in the filter; only the host calls are missing).
//! With `span`, each request also records its server span: attributes, name, OTLP encoding.

use sidetrace::context::Format;
use sidetrace::http_span::{Exchange, SpanDecorations};
use sidetrace::ids::IdGenerator;
use sidetrace::otlp::{encode_span, SpanLimits};
use sidetrace::propagation::composite::Propagator;
use sidetrace::propagation::{header_block, HeaderBlock, Rewriter, Setter};
use sidetrace::sampling::Sampler;
use sidetrace::span::{FinishedSpan, SpanKind};
use sidetrace::tracer::Tracer;
use std::hint::black_box;

struct Discard(usize);

impl Setter for Discard {
    fn set(&mut self, name: &str, value: &str) {
        self.0 += name.len() + value.len();
    }
    fn remove(&mut self, name: &str) {
        self.0 += name.len();
    }
}

impl Rewriter for Discard {
    fn leaves_as_is(&mut self, _: impl FnOnce(&mut Self)) -> bool {
        false
    }

    fn holds(&self, _: &str) -> bool {
        false
    }
}

fn main() {
    let formats: Vec<Format> = match std::env::args().nth(1).as_deref() {
        Some("all") => sidetrace::config::DEFAULT_EXTRACT.to_vec(),
        _ => vec![Format::TraceContext],
    };
    let tracer = Tracer {
        propagator: Propagator::new(&formats, &formats),
        sampler: Sampler::new(0.0).unwrap(),
        trust_incoming: true,
        write_threshold: false,
        xray_trace_ids: false,
        trace_ids_from_request_ids: false,
    };
    let serialized = header_block::serialize(&[
        (b":method", b"GET"),
        (b":path", b"/bench/item"),
        (b":authority", b"bench"),
        (b":scheme", b"http"),
        (b"user-agent", b"wrk"),
        (b"x-request-id", b"0b0a0c0d-1111-2222-3333-444455556666"),
        (
            b"traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ),
    ]);
    let record_spans = std::env::args().nth(2).as_deref() == Some("span");
    let mut ids = IdGenerator::from_seed(7);
    let mut written = Discard(0);
    for _ in 0..100_000 {
        let (request, _) = HeaderBlock::parse(black_box(serialized.clone()));
        let mut start = tracer.start(&request, &mut ids, || 0);
        tracer.propagate(&mut start, &mut written);
        if record_spans {
            written.0 += record(&request, &start).len();
        }
        black_box(&start);
    }
    println!("{}", written.0);
}

fn record(request: &HeaderBlock, start: &sidetrace::tracer::SpanStart) -> Vec<u8> {
    let exchange = Exchange {
        kind: SpanKind::Server,
        request,
        fields: sidetrace::http_span::RequestFields::of_block(request),
        route_name: None,
        protocol: Some("HTTP/1.1"),
        status_code: Some(200),
        grpc_status: None,
        response_flags: "",
        downstream_peer: Some("10.0.0.7:51234"),
        upstream_address: None,
        upstream_cluster: None,
        request_body_size: None,
        response_body_size: None,
    };
    let decorations = SpanDecorations {
        record_query: false,
        fixed_tags: &[],
        header_tags: &[],
        baggage: &[],
    };
    let mut attributes = Vec::with_capacity(24);
    exchange.attributes(&decorations, &mut attributes);
    let mut name = String::with_capacity(64);
    sidetrace::route::span_name(exchange.method(), None, exchange.path(), &mut name);
    let (status, message) = exchange.status();
    let span = FinishedSpan {
        trace_id: start.context.trace_id,
        span_id: start.context.span_id,
        parent_span_id: start.parent,
        parent_is_remote: start.parent.is_some(),
        trace_state: start.context.trace_state.as_str(),
        sampled: true,
        random: start.context.random,
        name: &name,
        kind: SpanKind::Server,
        start_unix_nanos: 1,
        end_unix_nanos: 2,
        attributes: &attributes,
        links: &[],
        status,
        status_message: &message,
    };
    let limits = SpanLimits {
        max_value_len: 256,
        max_attributes: 128,
    };
    let mut encoded = Vec::with_capacity(512);
    encode_span(&span, &limits, &mut encoded);
    encoded
}
