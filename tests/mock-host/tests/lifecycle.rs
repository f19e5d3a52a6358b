//! The built sidetrace.wasm under the mock host: configure, propagate, record, export, retry,
//! retire. Exported payloads are decoded with the independent `opentelemetry-proto` crate.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message;
use sidetrace_mock_host::MockHost;

const INBOUND: i64 = 1;
const OUTBOUND: i64 = 2;
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// A working base configuration with `extra` top-level fields merged over it.
fn config(extra: &str) -> String {
    let mut base = serde_json::json!({
        "collector": {"cluster": "otel-collector", "timeoutMs": 1500, "headers": {"x-scope-orgid": "tenant-a"}},
        "randomSamplingPercentage": 100,
        "batch": {"scheduledDelayMs": 100}
    });
    if !extra.is_empty() {
        let extra: serde_json::Value =
            serde_json::from_str(&format!("{{{extra}}}")).expect("test config");
        for (key, value) in extra.as_object().unwrap() {
            base[key] = value.clone();
        }
    }
    base.to_string()
}

fn configured(extra: &str) -> MockHost {
    let mut host =
        MockHost::load_with_env(&[("CLUSTER_NAME", "east-1")]).expect("load sidetrace.wasm");
    host.set_property(&["xds", "node", "metadata", "NAME"], b"checkout-1");
    host.set_property(&["xds", "node", "metadata", "NAMESPACE"], b"shop");
    host.set_property(&["xds", "node", "metadata", "LABELS", "app"], b"checkout");
    assert!(
        host.configure(&config(extra)).unwrap(),
        "config rejected: {:?}",
        host.logs()
    );
    host
}

fn w3c(trace: &str, parent: &str, flags: &str) -> String {
    format!("00-{trace}-{parent}-{flags}")
}

/// `request("/", &[])` with `extra` after it, as bytes: values need not be UTF-8.
fn request_bytes(extra: Vec<(&str, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    request("/", &[])
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .chain(extra.into_iter().map(|(k, v)| (k.to_string(), v)))
        .collect()
}

fn request<'a>(path: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", path),
        (":scheme", "http"),
        (":authority", "checkout:8080"),
    ];
    headers.extend_from_slice(extra);
    headers
}

/// Ticks past the scheduled delay and decodes every export the filter sent.
fn flush(host: &mut MockHost) -> Vec<(u32, ExportTraceServiceRequest)> {
    host.advance_ms(150);
    host.tick().unwrap();
    host.take_grpc_calls()
        .into_iter()
        .map(|call| {
            assert_eq!(call.cluster, "otel-collector");
            assert_eq!(
                call.service,
                "opentelemetry.proto.collector.trace.v1.TraceService"
            );
            assert_eq!(call.method, "Export");
            assert!(call
                .metadata
                .iter()
                .any(|(k, v)| k == "x-scope-orgid" && v == b"tenant-a"));
            (
                call.token,
                ExportTraceServiceRequest::decode(call.payload.as_slice()).expect("valid OTLP"),
            )
        })
        .collect()
}

fn spans(request: &ExportTraceServiceRequest) -> Vec<Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.clone()))
        .collect()
}

fn attr(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone())
        .and_then(|v| v.value)
}

fn ok_response() -> Vec<u8> {
    ExportTraceServiceResponse::default().encode_to_vec()
}

fn metric(host: &MockHost, name: &str) -> i64 {
    host.metric(&format!("sidetrace.{name}")).unwrap_or(0)
}

fn assert_counts_reconcile(host: &MockHost) {
    assert_eq!(
        metric(host, "spans_sampled"),
        metric(host, "spans_exported")
            + metric(host, "spans_dropped")
            + metric(host, "spans_queued"),
        "sampled = exported + dropped + queued"
    );
}

#[test]
fn bad_configurations_fail_with_one_line_naming_the_field() {
    let cases = [
        ("", "collector.cluster"),
        (
            r#"{"collector":{"cluster":"c"},"randomSamplingPercentage":150}"#,
            "randomSamplingPercentage",
        ),
        (
            r#"{"collector":{"cluster":"c"},"propagation":{"inject":["zipkin"]}}"#,
            "propagation.inject[0]",
        ),
        (
            r#"{"collector":{"cluster":"c"},"unknownField":1}"#,
            "unknownField",
        ),
        ("not json", "(root)"),
    ];
    for (json, field) in cases {
        let mut host = MockHost::load().unwrap();
        assert!(!host.configure(json).unwrap(), "{json} accepted");
        let errors = host.log_lines_at_least(4);
        assert_eq!(errors.len(), 1, "{json}: {errors:?}");
        assert!(
            errors[0].contains(&format!("`{field}`")),
            "{json}: {}",
            errors[0]
        );
    }
}

#[test]
fn a_good_configuration_is_accepted_and_ticks() {
    let host = configured("");
    assert!(host.log_lines_at_least(4).is_empty());
    assert!(host.tick_period_ms() > 0);
    // One info line names the version and where spans go, for an operator reading the log.
    let started = format!("sidetrace {}: configured", env!("CARGO_PKG_VERSION"));
    let info = host.log_lines_at_least(2);
    assert!(
        info.iter()
            .any(|line| line.starts_with(&started) && line.contains("`otel-collector`")),
        "{info:?}"
    );
}

#[test]
fn filter_state_is_published_only_when_configured() {
    for (extra, published) in [("", false), (r#""publishFilterState":true"#, true)] {
        let mut host = configured(extra);
        let stream = host.new_stream().unwrap();
        host.set_stream_int_property(stream, &["xds", "listener_direction"], INBOUND);
        let traceparent = w3c(TRACE, CALLER, "00");
        host.request_headers(stream, &request("/", &[("traceparent", &traceparent)]))
            .unwrap();
        let expected = published.then(|| TRACE.to_string());
        assert_eq!(
            host.filter_state(stream, "sidetrace.trace_id"),
            expected,
            "{extra}"
        );
        let expected = published.then(|| "0".to_string());
        assert_eq!(
            host.filter_state(stream, "sidetrace.sampled"),
            expected,
            "{extra}"
        );
    }
}

/// A caller whose unsampled context is already written in every format this hop writes (as a
/// mesh's sidecars write it: W3C and B3 here, the default formats) passes through: the host is
/// asked for the headers once and nothing is written.
#[test]
fn an_unsampled_caller_already_written_in_every_format_passes_through() {
    let traceparent = w3c(TRACE, CALLER, "00");
    for (why, span_id, passes) in [
        ("as this hop writes it", CALLER, true),
        ("B3 naming another span", "1111111111111111", false),
    ] {
        let mut host = configured(r#""randomSamplingPercentage":1"#);
        let stream = host.new_stream().unwrap();
        host.set_stream_int_property(stream, &["xds", "listener_direction"], INBOUND);
        let sent = request(
            "/",
            &[
                ("traceparent", &traceparent),
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", span_id),
                ("x-b3-sampled", "0"),
            ],
        );
        let (calls_before, _) = host.cost();
        host.request_headers(stream, &sent).unwrap();
        let calls = host.cost().0 - calls_before;
        let mut now = host.request_headers_now(stream);
        let mut as_sent: Vec<(String, String)> = sent
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        now.sort();
        as_sent.sort();
        assert_eq!(now == as_sent, passes, "{why}: {now:?}");
        assert_eq!(calls == 1, passes, "{why}: {calls} host calls");
        if !passes {
            let rewritten = host.request_header(stream, "x-b3-spanid").unwrap();
            assert_eq!(
                host.request_header(stream, "traceparent").unwrap()[36..52],
                rewritten
            );
        }
    }
}

#[test]
fn inbound_request_becomes_a_server_span_exported_over_grpc() {
    let mut host = configured(r#""serviceName":"checkout-svc","publishFilterState":true"#);
    let traceparent = w3c(TRACE, CALLER, "01");
    let stream = host.new_stream().unwrap();
    host.set_stream_int_property(stream, &["xds", "listener_direction"], INBOUND);
    host.set_stream_property(stream, &["request", "protocol"], b"HTTP/2");
    host.request_headers(
        stream,
        &request(
            "/orders/7",
            &[("traceparent", &traceparent), ("tracestate", "v=1")],
        ),
    )
    .unwrap();

    let rewritten = host.request_header(stream, "traceparent").unwrap();
    let span_id = &rewritten[36..52];
    assert!(rewritten.starts_with(&format!("00-{TRACE}-")) && rewritten.ends_with("-01"));
    assert_ne!(span_id, CALLER);
    assert_eq!(
        host.request_header(stream, "tracestate").as_deref(),
        Some("v=1")
    );
    assert_eq!(
        host.request_header(stream, "x-b3-spanid").as_deref(),
        Some(span_id)
    );
    assert_eq!(
        host.request_header(stream, "x-b3-traceid").as_deref(),
        Some(TRACE)
    );
    assert_eq!(
        host.filter_state(stream, "sidetrace.trace_id").as_deref(),
        Some(TRACE)
    );

    host.set_stream_int_property(stream, &["response", "code"], 200);
    host.advance_ms(7);
    host.finish_stream(stream).unwrap();
    assert_eq!(
        metric(&host, "spans_queued"),
        0,
        "span counters are published on the tick, not per request"
    );
    host.tick().unwrap();
    assert_eq!(metric(&host, "spans_queued"), 1);

    let exports = flush(&mut host);
    assert_eq!(exports.len(), 1);
    let resource = exports[0].1.resource_spans[0].resource.clone().unwrap();
    let service = resource
        .attributes
        .iter()
        .find(|a| a.key == "service.name")
        .unwrap();
    assert_eq!(
        service.value.clone().unwrap().value,
        Some(Value::StringValue("checkout-svc".into()))
    );
    let spans = spans(&exports[0].1);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(hex(&span.trace_id), TRACE);
    assert_eq!(hex(&span.span_id), span_id);
    assert_eq!(hex(&span.parent_span_id), CALLER);
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.name, "GET /orders/{id}");
    assert_eq!(
        span.end_time_unix_nano - span.start_time_unix_nano,
        7_000_000
    );
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    assert_eq!(
        attr(span, "url.path"),
        Some(Value::StringValue("/orders/7".into()))
    );
    assert_eq!(
        attr(span, "network.protocol.version"),
        Some(Value::StringValue("2".into()))
    );
    assert_eq!(
        span.status.clone().unwrap_or_default().code,
        StatusCode::Unset as i32
    );

    host.grpc_respond_ok(exports[0].0, &ok_response()).unwrap();
    assert_eq!(metric(&host, "spans_exported"), 1);
    assert_eq!(metric(&host, "export_requests"), 1);
    assert_eq!(metric(&host, "spans_started"), 1);
    assert_counts_reconcile(&host);
}

/// An inbound exchange answered 200 whose caller sent a W3C context with the given flags.
fn inbound_from_caller(host: &mut MockHost, path: &str, flags: &str) -> u32 {
    let traceparent = w3c(TRACE, CALLER, flags);
    host.exchange(
        INBOUND,
        &request(path, &[("traceparent", &traceparent)]),
        200,
    )
    .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_incoming_format_is_continued_and_rewritten() {
    let cases: Vec<(&str, String)> = vec![
        ("traceparent", w3c(TRACE, CALLER, "01")),
        ("b3", format!("{TRACE}-{CALLER}-1")),
        ("x-b3-traceid", TRACE.to_string()),
        (
            "x-amzn-trace-id",
            format!(
                "Root=1-{}-{};Parent={CALLER};Sampled=1",
                &TRACE[..8],
                &TRACE[8..]
            ),
        ),
        ("uber-trace-id", format!("{TRACE}:{CALLER}:0:1")),
    ];
    for (header, value) in cases {
        let mut host = configured(
            r#""propagation":{"inject":["tracecontext","b3","b3multi","xray","jaeger"]}"#,
        );
        let stream = host.new_stream().unwrap();
        host.set_stream_int_property(stream, &["xds", "listener_direction"], INBOUND);
        let mut extra = vec![(header, value.as_str())];
        if header == "x-b3-traceid" {
            extra.push(("x-b3-spanid", CALLER));
            extra.push(("x-b3-sampled", "1"));
        }
        host.request_headers(stream, &request("/", &extra)).unwrap();
        let traceparent = host.request_header(stream, "traceparent").unwrap();
        assert!(
            traceparent.starts_with(&format!("00-{TRACE}-")),
            "{header}: {traceparent}"
        );
        let span_id = traceparent[36..52].to_string();
        assert_eq!(
            host.request_header(stream, "b3").unwrap(),
            format!("{TRACE}-{span_id}-1"),
            "{header}"
        );
        assert_eq!(
            host.request_header(stream, "uber-trace-id").unwrap(),
            format!("{TRACE}:{span_id}:0:1")
        );
        assert_eq!(
            host.request_header(stream, "x-amzn-trace-id").unwrap(),
            format!(
                "Root=1-{}-{};Parent={span_id};Sampled=1",
                &TRACE[..8],
                &TRACE[8..]
            )
        );
        host.set_stream_int_property(stream, &["response", "code"], 200);
        host.finish_stream(stream).unwrap();
        let exports = flush(&mut host);
        let span = spans(&exports[0].1).remove(0);
        assert_eq!(hex(&span.parent_span_id), CALLER, "{header}");
    }
}

#[test]
fn status_follows_span_kind() {
    let cases = [
        (INBOUND, 503, StatusCode::Error),
        (INBOUND, 404, StatusCode::Unset),
        (OUTBOUND, 404, StatusCode::Error),
        (OUTBOUND, 200, StatusCode::Unset),
    ];
    for (direction, code, expected) in cases {
        let mut host = configured("");
        let traceparent = w3c(TRACE, CALLER, "01");
        host.exchange(
            direction,
            &request("/x", &[("traceparent", &traceparent)]),
            code,
        )
        .unwrap();
        let span = spans(&flush(&mut host)[0].1).remove(0);
        let kind = if direction == INBOUND {
            SpanKind::Server
        } else {
            SpanKind::Client
        };
        assert_eq!(span.kind, kind as i32);
        assert_eq!(
            span.status.unwrap_or_default().code,
            expected as i32,
            "{direction} {code}"
        );
    }
}

#[test]
fn no_response_is_an_error_described_by_the_response_flags() {
    let mut host = configured("");
    let stream = host.new_stream().unwrap();
    host.set_stream_int_property(stream, &["xds", "listener_direction"], OUTBOUND);
    host.request_headers(stream, &request("/pay", &[])).unwrap();
    host.set_stream_int_property(stream, &["response", "code"], 0);
    host.set_stream_int_property(stream, &["response", "flags"], 0x20);
    host.finish_stream(stream).unwrap();
    let span = spans(&flush(&mut host)[0].1).remove(0);
    let status = span.status.clone().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (StatusCode::Error as i32, "upstream connection failure")
    );
    assert_eq!(
        attr(&span, "envoy.response_flags"),
        Some(Value::StringValue("UF".into()))
    );
    assert_eq!(
        metric(&host, "outbound_without_context"),
        1,
        "the app sent no trace headers"
    );
}

#[test]
fn unsampled_requests_are_propagated_but_not_recorded() {
    let mut host = configured(r#""randomSamplingPercentage":0"#);
    let stream = inbound_from_caller(&mut host, "/", "00");
    let rewritten = host.request_header(stream, "traceparent").unwrap();
    assert!(rewritten.starts_with(&format!("00-{TRACE}-")) && rewritten.ends_with("-00"));
    assert!(flush(&mut host).is_empty());
    assert_eq!(metric(&host, "spans_started"), 1);
    assert_eq!(metric(&host, "spans_sampled"), 0);
}

/// At 0 % with `recordUnsampled`, a failed or slow request's span is recorded all the same,
/// saying why, with its trace flags left unsampled; a healthy fast one records nothing. Every
/// hop writes its own span id, so that such spans link along a path.
#[test]
fn unsampled_requests_are_recorded_when_they_fail_or_are_slow() {
    let mut host = configured(
        r#""randomSamplingPercentage":0,"recordUnsampled":{"onError":true,"slowerThanMs":2000}"#,
    );
    // (status, duration, recorded because)
    let cases = [
        (200, 5, None),
        (503, 5, Some("error")),
        (404, 5, None),
        (200, 2500, Some("slow")),
    ];
    for (status, duration_ms, because) in cases {
        let stream = host.new_stream().unwrap();
        host.set_stream_int_property(stream, &["xds", "listener_direction"], INBOUND);
        let traceparent = w3c(TRACE, CALLER, "00");
        host.request_headers(stream, &request("/", &[("traceparent", &traceparent)]))
            .unwrap();
        let written = host.request_header(stream, "traceparent").unwrap();
        assert!(
            !written.contains(CALLER) && written.ends_with("-00"),
            "this hop's own span, decision unchanged: {written}"
        );
        host.advance_ms(duration_ms);
        host.set_stream_int_property(stream, &["response", "code"], status);
        host.response_headers(stream, &[(":status", &status.to_string())])
            .unwrap();
        host.finish_stream(stream).unwrap();
        let exported: Vec<Span> = flush(&mut host)
            .iter()
            .flat_map(|(_, r)| spans(r))
            .collect();
        match because {
            None => assert!(exported.is_empty(), "{status} {duration_ms}"),
            Some(because) => {
                assert_eq!(exported.len(), 1, "{status} {duration_ms}");
                let span = &exported[0];
                assert_eq!(
                    attr(span, "sidetrace.recorded_because"),
                    Some(Value::StringValue(because.into()))
                );
                assert_eq!(span.flags & 1, 0, "trace flags stay unsampled");
                assert_eq!(hex(&span.parent_span_id), CALLER);
                assert!(written.contains(&hex(&span.span_id)));
            }
        }
    }
    assert_eq!(metric(&host, "spans_recorded_unsampled"), 2);
    assert_counts_reconcile(&host);
}

#[test]
fn a_sampled_parent_is_recorded_even_at_zero_percent() {
    let mut host = configured(r#""randomSamplingPercentage":0"#);
    let traceparent = w3c(TRACE, CALLER, "01");
    host.exchange(
        INBOUND,
        &request("/", &[("traceparent", &traceparent)]),
        200,
    )
    .unwrap();
    assert_eq!(spans(&flush(&mut host)[0].1).len(), 1);
}

#[test]
fn excluded_paths_propagate_without_a_span() {
    let mut host = configured(r#""excludePaths":["/healthz"]"#);
    let stream = inbound_from_caller(&mut host, "/healthz?probe=1", "01");
    assert!(host
        .request_header(stream, "traceparent")
        .unwrap()
        .starts_with(&format!("00-{TRACE}-")));
    assert!(flush(&mut host).is_empty());
    assert_eq!(metric(&host, "spans_started"), 0);
}

#[test]
fn custom_tags_literal_environment_and_header_with_defaults() {
    let mut host = configured(
        r#""customTags":{"env":{"literal":{"value":"production"}},
            "cluster":{"environment":{"name":"CLUSTER_NAME","defaultValue":"unknown"}},
            "zone":{"environment":{"name":"ZONE","defaultValue":"zone-default"}},
            "user":{"header":{"name":"x-user-id","defaultValue":"anonymous"}}}"#,
    );
    host.exchange(INBOUND, &request("/a", &[("x-user-id", "u-42")]), 200)
        .unwrap();
    host.exchange(INBOUND, &request("/b", &[]), 200).unwrap();
    let exported = spans(&flush(&mut host)[0].1);
    let by_path = |p: &str| {
        exported
            .iter()
            .find(|s| attr(s, "url.path") == Some(Value::StringValue(p.into())))
            .unwrap()
            .clone()
    };
    let a = by_path("/a");
    assert_eq!(
        attr(&a, "env"),
        Some(Value::StringValue("production".into()))
    );
    assert_eq!(
        attr(&a, "cluster"),
        Some(Value::StringValue("east-1".into()))
    );
    assert_eq!(
        attr(&a, "zone"),
        Some(Value::StringValue("zone-default".into()))
    );
    assert_eq!(attr(&a, "user"), Some(Value::StringValue("u-42".into())));
    assert_eq!(
        attr(&by_path("/b"), "user"),
        Some(Value::StringValue("anonymous".into()))
    );
}

#[test]
fn export_failures_are_retried_and_counted_once() {
    let mut host =
        configured(r#""retry":{"initialBackoffMs":100,"maxBackoffMs":100,"maxAttempts":3}"#);
    for _ in 0..3 {
        host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    }
    let first = flush(&mut host);
    assert_eq!(first.len(), 1);
    host.grpc_respond_error(first[0].0, 14, "collector unavailable")
        .unwrap();
    assert_eq!(metric(&host, "export_failures"), 1);
    assert_eq!(metric(&host, "spans_queued"), 3);
    let retry = flush(&mut host);
    assert_eq!(retry.len(), 1, "retried after backoff");
    assert_eq!(spans(&retry[0].1).len(), 3);
    host.grpc_respond_ok(retry[0].0, &ok_response()).unwrap();
    assert_eq!(metric(&host, "spans_exported"), 3);
    assert_eq!(metric(&host, "spans_dropped"), 0);
    assert_eq!(metric(&host, "export_requests"), 2);
    assert_counts_reconcile(&host);
}

#[test]
fn non_retryable_failures_and_partial_success_drop_and_count() {
    let mut host = configured("");
    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    let call = flush(&mut host).remove(0);
    host.grpc_respond_error(call.0, 3, "invalid argument")
        .unwrap();
    assert_eq!(metric(&host, "spans_dropped"), 1);
    assert!(
        flush(&mut host).is_empty(),
        "INVALID_ARGUMENT is not retried"
    );

    for _ in 0..4 {
        host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    }
    let call = flush(&mut host).remove(0);
    let partial = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "too old".into(),
        }),
    };
    host.grpc_respond_ok(call.0, &partial.encode_to_vec())
        .unwrap();
    assert_eq!(metric(&host, "spans_exported"), 3);
    assert_eq!(metric(&host, "spans_dropped"), 2);
    assert_counts_reconcile(&host);
}

/// A refused callout waits for the next attempt. A host may also report the refusal to the close
/// callback before the refused call returns: the module is inside its own tick then, and must
/// neither crash nor count the batch twice.
#[test]
fn a_refused_callout_is_retried_later() {
    for inline_close in [false, true] {
        let mut host =
            configured(r#""retry":{"initialBackoffMs":100,"maxBackoffMs":100,"maxAttempts":3}"#);
        if inline_close {
            host.refuse_grpc_calls_closing_inline();
        } else {
            host.refuse_grpc_calls(true);
        }
        host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
        assert!(flush(&mut host).is_empty());
        assert_eq!(
            metric(&host, "spans_queued"),
            1,
            "inline close: {inline_close}"
        );
        assert_eq!(
            metric(&host, "spans_dropped"),
            0,
            "inline close: {inline_close}"
        );
        assert!(host
            .log_lines_at_least(3)
            .iter()
            .any(|l| l.contains("export failed")));
        host.refuse_grpc_calls(false);
        let calls = flush(&mut host);
        assert_eq!(calls.len(), 1);
        host.grpc_respond_ok(calls[0].0, &ok_response()).unwrap();
        assert_eq!(metric(&host, "spans_exported"), 1);
        assert_counts_reconcile(&host);
    }
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let mut host = configured(
        r#""batch":{"maxQueueSize":4,"maxExportBatchSize":4,"scheduledDelayMs":100000}"#,
    );
    for _ in 0..10 {
        host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    }
    host.tick().unwrap();
    assert_eq!(metric(&host, "spans_sampled"), 10);
    assert_eq!(metric(&host, "spans_dropped"), 6);
    assert_eq!(metric(&host, "spans_queued"), 4);
    assert_counts_reconcile(&host);
}

#[test]
fn hostile_headers_never_crash_the_vm() {
    let mut host = configured("");
    let stream = host.new_stream().unwrap();
    host.set_stream_int_property(stream, &["xds", "listener_direction"], INBOUND);
    let huge_tracestate = (0..10_000)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let headers = vec![
        (":method".to_string(), b"GET".to_vec()),
        (":path".to_string(), b"/".to_vec()),
        ("traceparent".to_string(), vec![0xff, 0xfe, b'0', b'0']),
        ("tracestate".to_string(), huge_tracestate.into_bytes()),
        ("baggage".to_string(), "k=v,".repeat(250_000).into_bytes()),
        ("b3".to_string(), "\u{7f}garbage".as_bytes().to_vec()),
        (
            "x-amzn-trace-id".to_string(),
            "Root=1-x".repeat(100).into_bytes(),
        ),
    ];
    host.request_headers_bytes(stream, headers).unwrap();
    host.tick().unwrap();
    assert!(
        metric(&host, "invalid_context") >= 3,
        "{}",
        metric(&host, "invalid_context")
    );
    let traceparent = host.request_header(stream, "traceparent").unwrap();
    assert_eq!(
        traceparent.len(),
        55,
        "a fresh, valid context replaces the garbage: {traceparent}"
    );
    assert!(
        host.request_header(stream, "tracestate").is_none(),
        "invalid context is never forwarded"
    );
    host.set_stream_int_property(stream, &["response", "code"], 200);
    host.finish_stream(stream).unwrap();
    assert_eq!(spans(&flush(&mut host)[0].1).len(), 1);
}

#[test]
fn untrusted_context_starts_a_new_trace_with_a_link() {
    let mut host = configured(r#""trustIncomingContext":false"#);
    let stream = inbound_from_caller(&mut host, "/", "01");
    assert!(!host
        .request_header(stream, "traceparent")
        .unwrap()
        .contains(TRACE));
    let span = spans(&flush(&mut host)[0].1).remove(0);
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.links.len(), 1);
    assert_eq!(hex(&span.links[0].trace_id), TRACE);
    assert_eq!(hex(&span.links[0].span_id), CALLER);
}

#[test]
fn a_retired_plugin_flushes_what_it_holds_then_says_done() {
    let mut host = configured(r#""batch":{"scheduledDelayMs":100000}"#);
    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    // A configuration push: the new plugin comes up in the same VM, then the old one retires.
    assert!(host.add_root(&config("")).unwrap().is_some());
    assert!(!host.done().unwrap(), "waits for its final export");
    let calls = host.take_grpc_calls();
    assert_eq!(calls.len(), 1);
    host.grpc_respond_ok(calls[0].token, &ok_response())
        .unwrap();
    assert!(host.root_called_done());
    assert_eq!(metric(&host, "spans_exported"), 2);
    assert_counts_reconcile(&host);
}

#[test]
fn the_last_plugin_of_a_vm_counts_what_it_cannot_send() {
    let mut host = configured(r#""batch":{"scheduledDelayMs":100000}"#);
    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    assert!(
        host.done().unwrap(),
        "nothing to wait for: the VM goes with it"
    );
    assert!(host.take_grpc_calls().is_empty());
    assert_eq!(
        (
            metric(&host, "spans_dropped"),
            metric(&host, "spans_queued")
        ),
        (2, 0)
    );
    assert!(host
        .log_lines_at_least(3)
        .iter()
        .any(|l| l.contains("2 spans not sent")));
    assert_counts_reconcile(&host);
}

/// The gRPC rich error model, encoded here independently of the filter's own types.
mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    pub fn retry_after(seconds: i64) -> Vec<u8> {
        use prost::Message;
        let info = RetryInfo {
            retry_delay: Some(Duration { seconds, nanos: 0 }),
        };
        Status {
            code: 8,
            message: "slow down".into(),
            details: vec![Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        }
        .encode_to_vec()
    }
}

#[test]
fn resource_exhausted_is_retried_only_with_retry_info_and_after_its_delay() {
    let mut host =
        configured(r#""retry":{"initialBackoffMs":100,"maxBackoffMs":100,"maxAttempts":3}"#);
    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    let call = flush(&mut host).remove(0);
    host.grpc_respond_error_with_details(call.0, 8, "throttled", Some(rpc::retry_after(2)))
        .unwrap();
    assert_eq!(metric(&host, "spans_queued"), 1, "kept for a retry");
    host.advance_ms(1500);
    host.tick().unwrap();
    assert!(
        host.take_grpc_calls().is_empty(),
        "not before the server's 2 s"
    );
    host.advance_ms(600);
    let retry = flush(&mut host);
    assert_eq!(retry.len(), 1);
    host.grpc_respond_ok(retry[0].0, &ok_response()).unwrap();
    host.tick().unwrap();
    assert_eq!(
        (
            metric(&host, "spans_exported"),
            metric(&host, "spans_dropped")
        ),
        (1, 0)
    );

    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    let call = flush(&mut host).remove(0);
    host.grpc_respond_error(call.0, 8, "throttled, no hint")
        .unwrap();
    assert_eq!(
        metric(&host, "spans_dropped"),
        1,
        "RESOURCE_EXHAUSTED without RetryInfo is not retried"
    );
    assert_counts_reconcile(&host);
}

#[test]
fn an_export_past_its_timeout_is_cancelled_and_retried() {
    let mut host =
        configured(r#""retry":{"initialBackoffMs":100,"maxBackoffMs":100,"maxAttempts":3}"#);
    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    let call = flush(&mut host).remove(0);
    host.advance_ms(1600);
    host.tick().unwrap();
    assert_eq!(
        host.cancelled_grpc_streams(),
        &[call.0],
        "1500 ms timeout passed"
    );
    assert_eq!(metric(&host, "export_failures"), 1);
    let retry = flush(&mut host);
    assert_eq!(retry.len(), 1);
    host.grpc_respond_ok(retry[0].0, &ok_response()).unwrap();
    host.tick().unwrap();
    assert_eq!(metric(&host, "spans_exported"), 1);
    assert_counts_reconcile(&host);
}

#[test]
fn baggage_reaches_spans_only_key_by_key() {
    let baggage = [("baggage", "user=alice,tier=gold,secret=s3cr3t")];
    let mut host = configured("");
    host.exchange(INBOUND, &request("/", &baggage), 200)
        .unwrap();
    let span = spans(&flush(&mut host)[0].1).remove(0);
    assert!(
        span.attributes
            .iter()
            .all(|a| !a.key.starts_with("baggage")),
        "nothing by default"
    );

    let mut host = configured(r#""baggageAttributes":["user"]"#);
    let stream = host
        .exchange(INBOUND, &request("/", &baggage), 200)
        .unwrap();
    let span = spans(&flush(&mut host)[0].1).remove(0);
    let copied: Vec<_> = span
        .attributes
        .iter()
        .filter(|a| a.key.starts_with("baggage"))
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(copied, ["baggage.user"]);
    assert_eq!(
        attr(&span, "baggage.user"),
        Some(Value::StringValue("alice".into()))
    );
    assert_eq!(
        host.request_header(stream, "baggage").as_deref(),
        Some("user=alice,tier=gold,secret=s3cr3t"),
        "forwarded untouched"
    );
}

/// The batching arithmetic at rate: default batch settings, 25,000 spans per (simulated) second
/// from one worker, a collector that answers each export 20 ms later. Nothing may be dropped.
/// Time moves a millisecond at a time and the host ticks at whatever period the module asks
/// for, re-arming its timer when the period changes, as Envoy does.
#[test]
fn default_batching_sustains_25000_spans_per_second_without_drops() {
    const SPANS_PER_MS: u64 = 25;
    const COLLECTOR_LATENCY_MS: u64 = 20;
    let mut host = configured(r#""batch":{}"#);
    let mut pending: Vec<(u64, u32)> = Vec::new();
    let answer_due = |host: &mut MockHost, pending: &mut Vec<(u64, u32)>| {
        let now = host.now_nanos() / 1_000_000;
        for call in host.take_grpc_calls() {
            pending.push((now + COLLECTOR_LATENCY_MS, call.token));
        }
        let (due, later): (Vec<_>, Vec<_>) = pending.iter().partition(|(at, _)| *at <= now);
        *pending = later;
        for (_, token) in due {
            host.grpc_respond_ok(token, &ok_response()).unwrap();
        }
    };
    let mut period = u64::from(host.tick_period_ms());
    let mut next_tick = period;
    let mut sent = 0;
    for now in 1..=3000 {
        if now <= 1000 {
            for _ in 0..SPANS_PER_MS {
                host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
                sent += 1;
            }
        }
        host.advance_ms(1);
        answer_due(&mut host, &mut pending);
        let asked = u64::from(host.tick_period_ms());
        if asked != period {
            period = asked;
            next_tick = now + period;
        }
        if now >= next_tick {
            host.tick().unwrap();
            answer_due(&mut host, &mut pending);
            next_tick = now + period;
        }
    }
    assert_eq!(metric(&host, "spans_sampled"), sent);
    assert_eq!(metric(&host, "spans_dropped"), 0);
    assert_eq!(metric(&host, "spans_exported"), sent);
    assert_counts_reconcile(&host);
    assert_eq!(
        host.tick_period_ms(),
        20,
        "the tick never depends on the load"
    );
}

/// Hosts call an exported callback on every event it names (body callbacks on every chunk):
/// the built module exports only what `filter/exports.json` lists, the callbacks sidetrace
/// implements and what the ABI requires. Nothing is written on responses, so no response
/// callback crosses into the VM.
#[test]
fn only_the_callbacks_in_use_are_exported() {
    let listed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../filter/exports.json"
    ))
    .expect("filter/exports.json");
    let mut expected: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&listed)
        .expect("a JSON list")
        .iter()
        .map(|node| node["export"].as_str().expect("an export name").to_string())
        .collect();
    expected.sort();
    let mut host = configured("");
    let mut exports = host.exports();
    exports.sort();
    assert_eq!(exports, expected);
    assert!(!exports.iter().any(|name| name.contains("body")));
    assert!(!exports.iter().any(|name| name.contains("response")));
}

/// A plugin whose configuration was refused has no streams: its requests pass untouched.
#[test]
fn a_refused_configuration_leaves_traffic_untouched() {
    let mut host = MockHost::load().unwrap();
    assert!(!host.configure(r#"{"collector":{}}"#).unwrap());
    let traceparent = w3c(TRACE, CALLER, "01");
    let stream = host.new_stream().unwrap();
    let headers = request("/orders/7", &[("traceparent", &traceparent)]);
    let action = host.request_headers(stream, &headers).unwrap();
    assert_eq!(action, sidetrace_mock_host::Action::Continue);
    assert_eq!(
        host.request_header(stream, "traceparent"),
        Some(traceparent)
    );
    assert_eq!(host.request_header(stream, "x-b3-traceid"), None);
    host.set_stream_int_property(stream, &["response", "code"], 200);
    host.response_headers(stream, &[(":status", "200")])
        .unwrap();
    host.finish_stream(stream).unwrap();
    host.advance_ms(1000);
    host.tick().unwrap();
    assert!(host.grpc_calls().is_empty());
}

/// Streams overlap and end in any order; each keeps its own trace through to its span.
#[test]
fn overlapping_streams_ending_out_of_order_keep_their_own_spans() {
    let mut host = configured("");
    let parents: Vec<String> = (0..6).map(|i| format!("{:016x}", 0x1000 + i)).collect();
    let mut streams = Vec::new();
    for parent in &parents {
        let stream = host.new_stream().unwrap();
        host.set_stream_int_property(stream, &["xds", "listener_direction"], INBOUND);
        let traceparent = w3c(TRACE, parent, "01");
        host.request_headers(stream, &request("/", &[("traceparent", &traceparent)]))
            .unwrap();
        streams.push((stream, parent.clone()));
    }
    for at in [3, 0, 5, 1, 4, 2] {
        let (stream, parent) = &streams[at];
        // The status tells the spans apart in the export.
        host.set_stream_int_property(*stream, &["response", "code"], 200 + at as i64);
        host.finish_stream(*stream).unwrap();
        assert!(
            host.request_header(*stream, "traceparent").is_some(),
            "{parent}"
        );
    }
    let exported: Vec<Span> = flush(&mut host)
        .iter()
        .flat_map(|(_, request)| spans(request))
        .collect();
    assert_eq!(exported.len(), parents.len());
    for span in exported {
        let Some(Value::IntValue(status)) = attr(&span, "http.response.status_code") else {
            panic!("no status on {span:?}");
        };
        let at = (status - 200) as usize;
        assert_eq!(hex(&span.parent_span_id), parents[at], "stream {at}");
        assert_eq!(hex(&span.trace_id), TRACE);
    }
}

/// gRPC callbacks for a stream the module never opened (or already closed) change nothing.
#[test]
fn grpc_callbacks_for_unknown_streams_are_ignored() {
    let mut host = configured("");
    host.exchange(INBOUND, &request("/", &[]), 200).unwrap();
    host.grpc_respond_ok(9999, &ok_response()).unwrap();
    host.grpc_respond_error(9998, 14, "unavailable").unwrap();
    let exports = flush(&mut host);
    assert_eq!(exports.len(), 1);
    assert_eq!(metric(&host, "export_failures"), 0);
    assert_counts_reconcile(&host);
}

/// What Envoy knows of every proxied stream besides its route: direction, protocol, peer and
/// upstream.
fn set_envoy_facts(host: &mut MockHost, stream: u32, direction: i64, protocol: &[u8]) {
    host.set_stream_int_property(stream, &["xds", "listener_direction"], direction);
    host.set_stream_property(stream, &["request", "protocol"], protocol);
    host.set_stream_property(stream, &["source", "address"], b"10.0.0.7:51234");
    host.set_stream_property(stream, &["upstream", "address"], b"10.0.0.9:8080");
    host.set_stream_property(stream, &["xds", "cluster_name"], b"outbound|payments");
}

/// A property read costs Envoy a buffer handed into the VM: the listener's direction is read
/// only when something depends on it, and a span recorded whatever its kind reads it at the end
/// with its other facts.
#[test]
fn the_listener_direction_is_read_only_when_something_depends_on_it() {
    // (config, incoming flags, host evaluates expressions, read at the request, why)
    let cases = [
        (
            "",
            Some("00"),
            true,
            false,
            "unsampled, with the caller's context",
        ),
        (
            "",
            Some("01"),
            true,
            false,
            "sampled: its kind is read with its facts",
        ),
        (
            "",
            Some("01"),
            false,
            false,
            "sampled, no expressions: read at the end with the other facts",
        ),
        (
            r#""randomSamplingPercentage":0"#,
            None,
            true,
            false,
            "unsampled, no context: no span, nothing read",
        ),
        (
            r#""randomSamplingPercentage":0,"direction":"outbound""#,
            None,
            true,
            false,
            "unsampled, no context, direction set: counted at the start",
        ),
        (
            "",
            None,
            true,
            false,
            "sampled, no context: counted at the end",
        ),
        (
            r#""match":{"mode":"SERVER"}"#,
            Some("00"),
            true,
            true,
            "a match mode",
        ),
        (
            r#""match":{"mode":"SERVER"}"#,
            Some("01"),
            true,
            true,
            "a match mode, sampled",
        ),
        (
            r#""direction":"inbound""#,
            Some("01"),
            true,
            false,
            "configured",
        ),
    ];
    for (extra, flags, expressions, read, why) in cases {
        let mut host =
            MockHost::load_with_env(&[("CLUSTER_NAME", "east-1")]).expect("load sidetrace.wasm");
        if !expressions {
            host.without_expressions();
        }
        assert!(host.configure(&config(extra)).unwrap());
        let traceparent = flags.map(|flags| w3c(TRACE, CALLER, flags));
        let headers: Vec<(&str, &str)> = traceparent
            .iter()
            .map(|value| ("traceparent", value.as_str()))
            .collect();
        host.take_properties_read();
        let stream = host.new_stream().unwrap();
        set_envoy_facts(&mut host, stream, OUTBOUND, b"HTTP/1.1");
        host.set_stream_property(stream, &["xds", "route_name"], b"payments");
        host.request_headers(stream, &request("/", &headers))
            .unwrap();
        let direction_read = host
            .take_properties_read()
            .contains(&"xds.listener_direction".to_string());
        assert_eq!(direction_read, read, "{why}");
        host.set_stream_int_property(stream, &["response", "code"], 200);
        host.finish_stream(stream).unwrap();
        let evaluated = host.take_expressions_evaluated();
        let at_end = host.take_properties_read();
        let new_root_sampled = flags.is_none() && !extra.contains("randomSamplingPercentage");
        let sampled = (flags == Some("01") || new_root_sampled) && !extra.contains("SERVER");
        if sampled {
            assert_eq!(
                evaluated.len(),
                expressions as usize,
                "{why}: {evaluated:?}"
            );
            if expressions {
                assert_eq!(
                    evaluated
                        .iter()
                        .any(|e| e.contains("xds.listener_direction")),
                    !read && !extra.contains("direction"),
                    "{why}"
                );
                assert_eq!(
                    at_end,
                    Vec::<String>::new(),
                    "{why}: one call for every fact"
                );
            }
            let exported = spans(&flush(&mut host)[0].1);
            assert_eq!(
                exported[0].kind,
                if extra.contains("inbound") { 2 } else { 3 },
                "{why}: server 2, client 3"
            );
            assert_eq!(
                attr(&exported[0], "network.protocol.version"),
                Some(Value::StringValue("1.1".into())),
                "{why}"
            );
        } else {
            assert!(evaluated.is_empty(), "{why}: no span, no facts");
            flush(&mut host);
        }
        if flags.is_none() {
            assert_eq!(
                metric(&host, "outbound_without_context"),
                i64::from(sampled || extra.contains("outbound")),
                "{why}: the listener is outbound, read only for a recorded span or configured"
            );
        }
    }
}

/// Envoy answers one CEL expression with every fact a span records; a host without expressions
/// gets the same spans from one attribute read per fact. Both paths, same facts, compared.
#[test]
fn span_facts_are_the_same_read_in_one_expression_or_one_by_one() {
    let run = |expressions: bool| {
        let mut host =
            MockHost::load_with_env(&[("CLUSTER_NAME", "east-1")]).expect("load sidetrace.wasm");
        if !expressions {
            host.without_expressions();
        }
        assert!(host
            .configure(&config(r#""recordBodySizes":true"#))
            .unwrap());
        assert_eq!(host.live_expressions(), if expressions { 6 } else { 0 });
        // (direction, gRPC, status, route name)
        let exchanges = [
            (INBOUND, false, 200, Some("checkout")),
            (OUTBOUND, false, 503, None),
            (OUTBOUND, true, 200, Some("payments")),
            (INBOUND, true, 200, None),
        ];
        for (direction, grpc, status, route) in exchanges {
            let stream = host.new_stream().unwrap();
            set_envoy_facts(&mut host, stream, direction, b"HTTP/2");
            if let Some(route) = route {
                host.set_stream_property(stream, &["xds", "route_name"], route.as_bytes());
            }
            let content_type = if grpc {
                "application/grpc"
            } else {
                "text/plain"
            };
            host.request_headers(stream, &request("/pay", &[("content-type", content_type)]))
                .unwrap();
            host.response_headers(stream, &[(":status", &status.to_string())])
                .unwrap();
            host.set_stream_int_property(stream, &["response", "code"], status);
            host.set_stream_int_property(stream, &["response", "flags"], 0x20);
            host.set_stream_int_property(stream, &["response", "grpc_status"], 14);
            host.set_stream_int_property(stream, &["request", "size"], 12);
            host.set_stream_int_property(stream, &["response", "size"], 34);
            host.finish_stream(stream).unwrap();
        }
        let evaluated = host.take_expressions_evaluated().len();
        let exported = spans(&flush(&mut host)[0].1);
        assert_eq!(exported.len(), exchanges.len());
        let facts: Vec<_> = exported
            .iter()
            .map(|span| {
                let mut attributes: Vec<String> = span
                    .attributes
                    .iter()
                    .filter(|a| !a.key.starts_with("istio.") && a.key != "node_id")
                    .map(|a| format!("{}={:?}", a.key, a.value))
                    .collect();
                attributes.sort();
                (
                    span.kind,
                    span.name.clone(),
                    span.status.clone(),
                    attributes,
                )
            })
            .collect();
        (facts, evaluated, metric(&host, "facts_read_one_by_one"))
    };
    let (one_call, evaluations, fallbacks) = run(true);
    let (one_by_one, none, every_span) = run(false);
    assert_eq!((evaluations, none), (4, 0));
    assert_eq!(
        (fallbacks, every_span),
        (2, 4),
        "spans without a route fall back, and all of them on a host without expressions"
    );
    assert_eq!(one_call, one_by_one);
    let (kind, name, _, attributes) = &one_call[2];
    assert_eq!(*kind, SpanKind::Client as i32);
    assert_eq!(name, "GET payments", "{attributes:?}");
    for expected in [
        "server.address",
        "envoy.upstream_cluster",
        "rpc.grpc.status_code",
        "http.request.body.size",
        "network.protocol.version",
    ] {
        assert!(
            attributes.iter().any(|a| a.starts_with(expected)),
            "{expected} missing from {attributes:?}"
        );
    }
}

/// Expressions are compiled once per configuration, and a replaced configuration's are deleted.
#[test]
fn a_reconfigured_plugin_leaves_no_expressions_behind() {
    let mut host = configured("");
    assert_eq!(host.live_expressions(), 6);
    assert!(host
        .configure(&config(r#""recordBodySizes":true"#))
        .unwrap());
    assert_eq!(host.live_expressions(), 6);
}

/// Each span property is a host call: a span reads only what it will carry.
#[test]
fn spans_carry_body_sizes_only_when_asked_and_envoy_facts_where_they_explain() {
    for (extra, sizes_recorded) in [("", false), (r#""recordBodySizes":true"#, true)] {
        let mut host = configured(extra);
        for (direction, status, flags) in [
            (INBOUND, 200, 0x20),
            (OUTBOUND, 200, 0x20),
            (OUTBOUND, 503, 0x20),
        ] {
            let stream = host.new_stream().unwrap();
            host.set_stream_int_property(stream, &["xds", "listener_direction"], direction);
            host.set_stream_property(stream, &["upstream", "address"], b"10.0.0.9:8080");
            host.set_stream_property(stream, &["xds", "cluster_name"], b"outbound|payments");
            host.set_stream_property(stream, &["source", "address"], b"10.0.0.7:51234");
            host.request_headers(stream, &request("/pay", &[])).unwrap();
            host.set_stream_int_property(stream, &["response", "code"], status);
            host.set_stream_int_property(stream, &["response", "flags"], flags);
            host.set_stream_int_property(stream, &["request", "size"], 12);
            host.set_stream_int_property(stream, &["response", "size"], 34);
            host.finish_stream(stream).unwrap();
        }
        let exported = spans(&flush(&mut host)[0].1);
        assert_eq!(exported.len(), 3);
        for span in &exported {
            assert_eq!(
                attr(span, "http.request.body.size").is_some(),
                sizes_recorded,
                "{extra}"
            );
            assert_eq!(
                attr(span, "http.response.body.size").is_some(),
                sizes_recorded,
                "{extra}"
            );
        }
        let (server, client_ok, client_failed) = (&exported[0], &exported[1], &exported[2]);
        assert_eq!(attr(server, "envoy.upstream_cluster"), None);
        assert_eq!(
            attr(server, "envoy.response_flags"),
            None,
            "a 200 needs no explanation"
        );
        assert_eq!(
            attr(client_ok, "envoy.upstream_cluster"),
            Some(Value::StringValue("outbound|payments".into()))
        );
        assert_eq!(attr(client_ok, "envoy.response_flags"), None);
        assert_eq!(
            attr(client_failed, "envoy.response_flags"),
            Some(Value::StringValue("UF".into()))
        );
    }
}

/// Envoy charges a quarter less to add a header than to replace one: a name the request lacks is
/// added, one it has is replaced, and no header ends up with two values. When a header could not
/// be read (not UTF-8), absence is unknown and every write replaces, every removal is made.
#[test]
fn injected_headers_are_added_when_absent_and_replaced_when_present() {
    let propagation =
        r#""propagation":{"extract":["tracecontext","b3"],"inject":["tracecontext","b3multi"]}"#;
    let parent = w3c(TRACE, CALLER, "01");
    let single = format!("{TRACE}-{CALLER}-1");
    // (case, headers besides the request line)
    type Case<'a> = (&'a str, Vec<(&'a str, Vec<u8>)>);
    let cases: [Case; 4] = [
        ("no context", vec![]),
        (
            "traceparent",
            vec![("traceparent", parent.clone().into_bytes())],
        ),
        (
            "b3, read and not written",
            vec![("b3", single.into_bytes())],
        ),
        (
            "unreadable headers, one of them written",
            vec![
                ("traceparent", parent.into_bytes()),
                ("x-junk", vec![0xff, 0xfe]),
                ("x-b3-traceid", vec![0xff, 0xfe]),
            ],
        ),
    ];
    for (why, extra) in cases {
        let mut host = configured(propagation);
        let stream = host.new_stream().unwrap();
        host.set_stream_int_property(stream, &["xds", "listener_direction"], INBOUND);
        let headers = request_bytes(extra);
        let had: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
        host.take_header_writes();
        host.request_headers_bytes(stream, headers).unwrap();
        let writes = host.take_header_writes();
        let mut seen: Vec<String> = Vec::new();
        for (call, name) in &writes {
            let may_hold = had.contains(name) || seen.contains(name);
            let expected = match (*call, may_hold) {
                ("remove", _) => "remove",
                (_, true) => "replace",
                (_, false) => "add",
            };
            assert_eq!(*call, expected, "{why}: {name} in {writes:?}");
            assert!(
                *call != "remove" || may_hold,
                "{why}: removed {name}, which the request never had"
            );
            seen.push(name.clone());
        }
        let now = host.request_headers_now(stream);
        for name in ["traceparent", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"] {
            let values = now.iter().filter(|(k, _)| k == name).count();
            assert_eq!(values, 1, "{why}: {name} in {now:?}");
        }
        assert!(
            !now.iter().any(|(k, _)| k == "b3"),
            "{why}: a format read and not written is removed: {now:?}"
        );
        host.finish_stream(stream).unwrap();
    }
}

/// A sampled caller's `tracestate` is written again only where the request's differs from what
/// the span continues with: split over two headers (joined into one), or with a member W3C does
/// not allow (the whole list dropped); held exactly, it is left alone.
#[test]
fn a_continued_tracestate_is_written_only_where_it_changes() {
    let sampled = w3c(TRACE, CALLER, "01");
    // (case, the request's tracestate headers, the tracestate sent on, whether it was written)
    let cases: [(&str, &[&str], &[&str], bool); 3] = [
        ("held exactly", &["a=1,b=2"], &["a=1,b=2"], false),
        ("in two headers", &["a=1", "b=2"], &["a=1,b=2"], true),
        // A list that does not parse is dropped whole, never forwarded in part.
        ("a member not allowed", &["a=1,B C=2"], &[], true),
    ];
    for (why, held, sent, written) in cases {
        let mut host =
            configured(r#""propagation":{"extract":["tracecontext"],"inject":["tracecontext"]}"#);
        let mut extra = vec![("traceparent", sampled.as_str())];
        extra.extend(held.iter().map(|value| ("tracestate", *value)));
        host.take_header_writes();
        let stream = host.exchange(INBOUND, &request("/", &extra), 200).unwrap();
        let writes = host.take_header_writes();
        let writes: Vec<&str> = writes
            .iter()
            .filter(|(_, name)| name == "tracestate")
            .map(|(call, _)| *call)
            .collect();
        assert_eq!(!writes.is_empty(), written, "{why}: {writes:?}");
        let tracestates: Vec<String> = host
            .request_headers_now(stream)
            .into_iter()
            .filter(|(name, _)| name == "tracestate")
            .map(|(_, value)| value)
            .collect();
        if written {
            assert_eq!(tracestates, sent, "{why}");
        } else {
            assert_eq!(tracestates, held, "{why}");
        }
    }
}

/// Every request's header map is read once, whole, whatever the formats and the sampling: a
/// new trace's request as much as a caller's, a span recorded or not.
#[test]
fn every_request_reads_its_header_map_once() {
    let w3c_only = r#""propagation":{"extract":["tracecontext"],"inject":["tracecontext"]}"#;
    let cases = [
        format!(r#"{w3c_only},"randomSamplingPercentage":0"#),
        format!(r#"{w3c_only},"randomSamplingPercentage":0,"excludePaths":["/healthz"]"#),
        format!(r#"{w3c_only},"randomSamplingPercentage":100"#),
        r#""randomSamplingPercentage":0"#.to_string(),
        r#""randomSamplingPercentage":100"#.to_string(),
    ];
    let caller = w3c(TRACE, CALLER, "00");
    for extra in &cases {
        for headers in [vec![], vec![("traceparent", caller.as_str())]] {
            let mut host = configured(extra);
            host.take_request_header_reads();
            let stream = host
                .exchange(INBOUND, &request("/", &headers), 200)
                .unwrap();
            assert_eq!(
                host.take_request_header_reads(),
                ["*"],
                "{extra} {headers:?}"
            );
            let written = host.request_header(stream, "traceparent").unwrap();
            assert!(written.starts_with("00-"), "{extra}: {written}");
            let sampled = extra.contains(":100") && headers.is_empty();
            assert_eq!(!flush(&mut host).is_empty(), sampled, "{extra} {headers:?}");
        }
    }
}

/// An unsampled caller's context is forwarded as it came: headers that would be written with
/// the value they hold are left alone, and only what the configuration changes is written (a
/// format read but not written is removed, one written but not read is added).
#[test]
fn an_unsampled_caller_is_forwarded_with_only_what_the_configuration_changes() {
    let caller = w3c(TRACE, CALLER, "00");
    let b3 = format!("{TRACE}-{CALLER}-0");
    // (config, a B3 header too, the writes expected)
    type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        (
            r#""propagation":{"extract":["tracecontext"],"inject":["tracecontext"]},"randomSamplingPercentage":30"#,
            false,
            &[],
        ),
        (
            r#""propagation":{"extract":["tracecontext","b3"],"inject":["tracecontext"]},"randomSamplingPercentage":0"#,
            false,
            &[],
        ),
        (
            r#""propagation":{"extract":["tracecontext","b3"],"inject":["tracecontext"]},"randomSamplingPercentage":0"#,
            true,
            &[("remove", "b3")],
        ),
        (
            r#""propagation":{"extract":["tracecontext"],"inject":["tracecontext","b3"]},"randomSamplingPercentage":0"#,
            false,
            &[("add", "b3")],
        ),
    ];
    for (extra, with_b3, expected_writes) in cases {
        let mut host = configured(extra);
        host.take_request_header_reads();
        host.take_header_writes();
        let mut headers = vec![("traceparent", caller.as_str())];
        if with_b3 {
            headers.push(("b3", b3.as_str()));
        }
        let stream = host
            .exchange(INBOUND, &request("/", &headers), 200)
            .unwrap();
        assert_eq!(host.take_request_header_reads(), ["*"], "{extra}");
        let sent = host.request_header(stream, "traceparent").unwrap();
        assert_eq!(sent, caller, "{extra}");
        let writes = host.take_header_writes();
        let writes: Vec<(&str, &str)> = writes
            .iter()
            .map(|(call, name)| (*call, name.as_str()))
            .collect();
        assert_eq!(writes, expected_writes, "{extra}");
    }
}

/// The VM's linear memory is published as a gauge, whole, on a tick when it has changed: it
/// grows while spans wait in a full queue and reads the memory's size, not a count the filter
/// keeps.
#[test]
fn the_linear_memory_gauge_reads_the_memory_size() {
    let mut host = configured(
        r#""batch":{"maxQueueSize":4096,"maxExportBatchSize":4096,"scheduledDelayMs":600000}"#,
    );
    host.advance_ms(150);
    host.tick().unwrap();
    let idle = host.memory_bytes();
    assert!(idle > 0);
    assert_eq!(metric(&host, "linear_memory_bytes"), idle as i64);
    for _ in 0..4000 {
        host.exchange(INBOUND, &request("/orders/1", &[]), 200)
            .unwrap();
    }
    host.advance_ms(150);
    host.tick().unwrap();
    let full = host.memory_bytes();
    assert!(full > idle, "{full} after 4,000 queued spans, {idle} idle");
    assert_eq!(metric(&host, "linear_memory_bytes"), full as i64);
}
