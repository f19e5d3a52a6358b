// The zipkin crate deprecates its exporter; its B3 propagator is still the reference one.
#![allow(deprecated)]

//! Extract + inject per format, sidetrace next to opentelemetry-rust on the same headers. Both
//! read from the same header list (what a proxy hands over: a few pairs, looked up by linear
//! scan) and write into a sink that keeps nothing, so each
//! pays only for its own work (opentelemetry-rust's `Injector` takes an owned `String`, which it
//! allocates; sidetrace's `Setter` takes `&str`).

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::propagation::TextMapPropagator;
use sidetrace::context::Format;
use sidetrace::propagation::composite::Propagator;
use sidetrace::propagation::{Getter, Setter};
use std::hint::black_box;

#[derive(Clone)]
struct HeaderList(Vec<(String, String)>);

impl Getter for HeaderList {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn for_each<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str)) {
        self.0.iter().for_each(|(k, v)| visit(k, v));
    }
}

impl opentelemetry::propagation::Extractor for HeaderList {
    fn get(&self, key: &str) -> Option<&str> {
        Getter::get(self, key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Counts what it is given and keeps nothing.
#[derive(Default)]
struct Sink(usize);

impl Setter for Sink {
    fn set(&mut self, name: &str, value: &str) {
        self.0 += black_box(name).len() + black_box(value).len();
    }

    fn remove(&mut self, name: &str) {
        self.0 += black_box(name).len();
    }
}

impl opentelemetry::propagation::Injector for Sink {
    fn set(&mut self, key: &str, value: String) {
        self.0 += black_box(key).len() + black_box(value).len();
    }
}

/// The request's own headers plus the trace headers under test.
fn headers(pairs: &[(&str, &str)]) -> HeaderList {
    let mut list: Vec<(String, String)> = [
        (":method", "GET"),
        (":path", "/orders/7"),
        (":authority", "checkout"),
        ("user-agent", "curl/8.5.0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    list.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    HeaderList(list)
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";

fn sidetrace_round_trip(c: &mut Criterion, name: &str, format: Format, input: &HeaderList) {
    let propagator = Propagator::new(&[format], &[format]);
    c.bench_function(&format!("{name}/sidetrace"), |b| {
        b.iter(|| {
            let incoming = propagator.extract(black_box(input));
            let mut out = Sink::default();
            if let Some(context) = &incoming.context {
                propagator.inject(context, &incoming, &mut out);
            }
            black_box(out.0)
        })
    });
}

fn otel_round_trip(
    c: &mut Criterion,
    name: &str,
    propagator: &dyn TextMapPropagator,
    input: &HeaderList,
) {
    c.bench_function(&format!("{name}/opentelemetry-rust"), |b| {
        b.iter(|| {
            let context = propagator.extract(black_box(input));
            let mut out = Sink::default();
            propagator.inject_context(&context, &mut out);
            black_box(out.0)
        })
    });
}

fn propagation(c: &mut Criterion) {
    let w3c = headers(&[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)]);
    sidetrace_round_trip(c, "tracecontext+tracestate", Format::TraceContext, &w3c);
    otel_round_trip(
        c,
        "tracecontext+tracestate",
        &opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        &w3c,
    );

    let w3c_plain = headers(&[("traceparent", TRACEPARENT)]);
    sidetrace_round_trip(c, "tracecontext", Format::TraceContext, &w3c_plain);
    otel_round_trip(
        c,
        "tracecontext",
        &opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        &w3c_plain,
    );

    let b3 = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")]);
    sidetrace_round_trip(c, "b3", Format::B3, &b3);
    let zipkin_single = opentelemetry_zipkin::Propagator::with_encoding(
        opentelemetry_zipkin::B3Encoding::SingleHeader,
    );
    otel_round_trip(c, "b3", &zipkin_single, &b3);

    let b3multi = headers(&[
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
    ]);
    sidetrace_round_trip(c, "b3multi", Format::B3Multi, &b3multi);
    let zipkin_multi = opentelemetry_zipkin::Propagator::with_encoding(
        opentelemetry_zipkin::B3Encoding::MultipleHeader,
    );
    otel_round_trip(c, "b3multi", &zipkin_multi, &b3multi);

    let xray = headers(&[(
        "x-amzn-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )]);
    sidetrace_round_trip(c, "xray", Format::XRay, &xray);
    let jaeger = headers(&[(
        "uber-trace-id",
        "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1",
    )]);
    sidetrace_round_trip(c, "jaeger", Format::Jaeger, &jaeger);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = propagation
}
criterion_main!(benches);
