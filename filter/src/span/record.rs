//! A stream's span, from what the stream remembered at its start and what the proxy says at
//! its end, encoded straight into the batch it will leave in.

use super::facts::SpanFacts;
use super::http::{Exchange, RequestFields, SpanDecorations};
use super::route::span_name;
use super::{Attribute, AttributeValue, FinishedSpan, Link, SpanKind};
use crate::config::{HeaderTag, RecordUnsampled};
use crate::context::{SpanContext, SpanId};
use crate::otlp::{encode_span, SpanLimits};
use crate::propagation::baggage::Baggage;
use crate::propagation::HeaderBlock;

/// What the configuration adds to every span, settled once per plugin.
pub struct SpanSettings {
    pub record_query: bool,
    pub fixed_tags: Vec<(String, String)>,
    pub header_tags: Vec<HeaderTag>,
    /// `(baggage key, attribute name)` for the baggage keys copied onto spans.
    pub baggage_attributes: Vec<(String, String)>,
    pub limits: SpanLimits,
}

/// Why an unsampled request's span was recorded all the same (`recordUnsampled`): the value of
/// its `sidetrace.recorded_because` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordedBecause {
    Error,
    Slow,
}

impl RecordedBecause {
    pub const ATTRIBUTE: &'static str = "sidetrace.recorded_because";

    pub fn as_str(self) -> &'static str {
        match self {
            RecordedBecause::Error => "error",
            RecordedBecause::Slow => "slow",
        }
    }

    /// Whether an unsampled span is recorded, and why: a SERVER span answered 5xx, a CLIENT
    /// span answered 5xx or not at all (a reset, a timeout, no healthy upstream), or the span
    /// lasted longer than `slowerThanMs`. `status` is the response's, `None` without one.
    pub fn of(
        rule: &RecordUnsampled,
        kind: SpanKind,
        status: Option<u32>,
        duration_nanos: u64,
    ) -> Option<RecordedBecause> {
        let server_error = status.is_some_and(|code| code >= 500);
        let failed = match kind {
            SpanKind::Server => server_error,
            SpanKind::Client => server_error || status.is_none_or(|code| code == 0),
        };
        if rule.on_error && failed {
            return Some(RecordedBecause::Error);
        }
        let slow = rule.slower_than_ms > 0 && duration_nanos > rule.slower_than_ms * 1_000_000;
        slow.then_some(RecordedBecause::Slow)
    }
}

/// What a recorded stream keeps from its start until its end.
pub struct Recording {
    /// `None` until the end when the listener's direction is read with the span's other facts.
    pub kind: Option<SpanKind>,
    pub context: SpanContext,
    pub parent: Option<SpanId>,
    pub link: Option<SpanContext>,
    pub baggage: Option<Baggage>,
    pub start_unix_nanos: u64,
    pub request: HeaderBlock,
    /// False for an unsampled request kept in case it fails or is slow (`recordUnsampled`).
    pub sampled: bool,
}

/// What the proxy says of a stream once it is over.
pub struct StreamEnd<'a> {
    pub end_unix_nanos: u64,
    pub kind: SpanKind,
    pub facts: SpanFacts<'a>,
    /// Envoy's response flags as short codes, read only for a failed exchange.
    pub response_flags: String,
    /// Set for an unsampled span recorded all the same.
    pub recorded_because: Option<RecordedBecause>,
}

/// Encodes the span of `recording`, ended as `end` says, into `out`. `fields` are what
/// `RequestFields::read` found in `recording.request`; the span's name is written in `name`,
/// a buffer the caller keeps from span to span so that naming one allocates nothing.
pub fn encode_recorded_span(
    settings: &SpanSettings,
    recording: &Recording,
    fields: RequestFields,
    end: &StreamEnd,
    name: &mut String,
    out: &mut Vec<u8>,
) {
    let facts = &end.facts;
    let exchange = Exchange {
        kind: end.kind,
        request: &recording.request,
        fields,
        route_name: facts.route_name.as_deref(),
        protocol: facts.protocol.as_deref(),
        status_code: facts.status_code,
        grpc_status: facts.grpc_status,
        response_flags: &end.response_flags,
        downstream_peer: facts.downstream_peer.as_deref(),
        upstream_address: facts.upstream_address.as_deref(),
        upstream_cluster: facts.upstream_cluster.as_deref(),
        request_body_size: facts.request_body_size,
        response_body_size: facts.response_body_size,
    };
    let baggage_values: Vec<(&str, &str)> = match &recording.baggage {
        Some(baggage) => settings
            .baggage_attributes
            .iter()
            .filter_map(|(key, name)| baggage.get(key).map(|value| (name.as_str(), value)))
            .collect(),
        None => Vec::new(),
    };
    let decorations = SpanDecorations {
        record_query: settings.record_query,
        fixed_tags: &settings.fixed_tags,
        header_tags: &settings.header_tags,
        baggage: &baggage_values,
    };
    let mut attributes: Vec<Attribute> = Vec::with_capacity(24);
    exchange.attributes(&decorations, &mut attributes);
    if let Some(because) = end.recorded_because {
        attributes.push(Attribute {
            key: RecordedBecause::ATTRIBUTE,
            value: AttributeValue::Str(because.as_str()),
        });
    }
    span_name(
        exchange.method(),
        exchange.route_name,
        exchange.path(),
        name,
    );
    let (status, status_message) = exchange.status();
    let links: Vec<Link> = recording
        .link
        .iter()
        .map(|external| Link {
            trace_id: external.trace_id,
            span_id: external.span_id,
            trace_state: external.trace_state.as_str(),
            sampled: external.is_sampled(),
        })
        .collect();
    let context = &recording.context;
    let span = FinishedSpan {
        trace_id: context.trace_id,
        span_id: context.span_id,
        parent_span_id: recording.parent,
        parent_is_remote: recording.parent.is_some(),
        trace_state: context.trace_state.as_str(),
        sampled: recording.sampled,
        random: context.random,
        name,
        kind: end.kind,
        start_unix_nanos: recording.start_unix_nanos,
        end_unix_nanos: end.end_unix_nanos.max(recording.start_unix_nanos),
        attributes: &attributes,
        links: &links,
        status,
        status_message: &status_message,
    };
    encode_span(&span, &settings.limits, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Format, Sampling, TraceId};
    use crate::otlp::proto::trace;
    use prost::Message;
    use std::borrow::Cow;

    fn settings() -> SpanSettings {
        SpanSettings {
            record_query: false,
            fixed_tags: vec![("env".into(), "prod".into())],
            header_tags: vec![HeaderTag {
                tag: "tenant".into(),
                header: "x-tenant".into(),
                default_value: Some("none".into()),
            }],
            baggage_attributes: vec![],
            limits: SpanLimits {
                max_value_len: 256,
                max_attributes: 128,
            },
        }
    }

    fn recording(parent: Option<SpanId>) -> Recording {
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736", true).unwrap();
        let span_id = SpanId::from_hex("00f067aa0ba902b7", true).unwrap();
        Recording {
            kind: None,
            context: SpanContext::new(trace_id, span_id, Sampling::Sampled, Format::TraceContext),
            parent,
            link: None,
            baggage: None,
            start_unix_nanos: 1_000,
            request: HeaderBlock::from_pairs([
                (":method", "GET"),
                (":path", "/orders/42?x=1"),
                (":authority", "checkout:8080"),
            ]),
            sampled: true,
        }
    }

    fn decoded(recording: &Recording, end: &StreamEnd) -> trace::Span {
        decoded_naming_in(recording, end, &mut String::new())
    }

    /// The span as `decoded` gives it, its name written in `name`.
    fn decoded_naming_in(recording: &Recording, end: &StreamEnd, name: &mut String) -> trace::Span {
        let mut out = Vec::new();
        let fields = RequestFields::read(&recording.request);
        encode_recorded_span(&settings(), recording, fields, end, name, &mut out);
        trace::Span::decode(out.as_slice()).expect("prost decodes the span")
    }

    #[test]
    fn a_recorded_server_span_carries_its_parent_name_status_and_tags() {
        let parent = SpanId::from_hex("1111111111111111", true).unwrap();
        let end = StreamEnd {
            end_unix_nanos: 5_000,
            kind: SpanKind::Server,
            facts: SpanFacts {
                status_code: Some(503),
                route_name: Some(Cow::Borrowed("orders")),
                ..SpanFacts::default()
            },
            response_flags: String::new(),
            recorded_because: None,
        };
        let span = decoded(&recording(Some(parent)), &end);
        assert_eq!(span.parent_span_id, parent.0.to_vec());
        assert_eq!(span.kind, trace::span::SpanKind::Server as i32);
        assert_eq!(span.name, "GET orders");
        assert_eq!(
            span.status.unwrap().code,
            trace::status::StatusCode::Error as i32
        );
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (1_000, 5_000)
        );
        let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
        assert!(
            keys.contains(&"env") && keys.contains(&"tenant"),
            "{keys:?}"
        );
        assert!(keys.contains(&"http.response.status_code"), "{keys:?}");
    }

    #[test]
    fn a_name_buffer_kept_between_spans_holds_only_the_current_name() {
        let end = |route: Option<&'static str>| StreamEnd {
            end_unix_nanos: 5_000,
            kind: SpanKind::Server,
            facts: SpanFacts {
                route_name: route.map(Cow::Borrowed),
                ..SpanFacts::default()
            },
            response_flags: String::new(),
            recorded_because: None,
        };
        let recording = recording(None);
        let mut name = String::new();
        let names: Vec<String> = [Some("orders"), None, Some("checkout")]
            .into_iter()
            .map(|route| decoded_naming_in(&recording, &end(route), &mut name).name)
            .collect();
        assert_eq!(names, ["GET orders", "GET /orders/{id}", "GET checkout"]);
    }

    #[test]
    fn an_end_before_the_start_is_clamped_to_it() {
        let end = StreamEnd {
            end_unix_nanos: 10,
            kind: SpanKind::Client,
            facts: SpanFacts::default(),
            response_flags: "UF".into(),
            recorded_because: None,
        };
        let span = decoded(&recording(None), &end);
        assert_eq!(span.end_time_unix_nano, 1_000);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.kind, trace::span::SpanKind::Client as i32);
    }

    #[test]
    fn an_unsampled_span_is_recorded_only_for_an_error_or_slowness() {
        use RecordedBecause::{Error, Slow};
        use SpanKind::{Client, Server};
        let both = RecordUnsampled {
            on_error: true,
            slower_than_ms: 2000,
        };
        let errors_only = RecordUnsampled {
            on_error: true,
            slower_than_ms: 0,
        };
        let slow_only = RecordUnsampled {
            on_error: false,
            slower_than_ms: 2000,
        };
        let ms = 1_000_000;
        // (rule, kind, status, duration, recorded because)
        let cases = [
            (both, Server, Some(503), 5 * ms, Some(Error)),
            (both, Server, Some(500), 3000 * ms, Some(Error)),
            (both, Server, Some(404), 5 * ms, None),
            (both, Server, None, 5 * ms, None),
            (both, Client, Some(502), 5 * ms, Some(Error)),
            (both, Client, None, 5 * ms, Some(Error)),
            (both, Client, Some(0), 5 * ms, Some(Error)),
            (both, Client, Some(200), 5 * ms, None),
            (both, Client, Some(200), 2000 * ms, None),
            (both, Client, Some(200), 2000 * ms + 1, Some(Slow)),
            (errors_only, Server, Some(200), 9000 * ms, None),
            (slow_only, Server, Some(503), 5 * ms, None),
            (slow_only, Server, Some(503), 2001 * ms, Some(Slow)),
            (RecordUnsampled::default(), Client, None, 9000 * ms, None),
        ];
        for (at, (rule, kind, status, duration, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                RecordedBecause::of(&rule, kind, status, duration),
                expected,
                "case {at}: {kind:?} {status:?}"
            );
        }
    }

    #[test]
    fn an_unsampled_span_says_why_it_was_recorded_and_keeps_its_flags() {
        let mut recording = recording(None);
        recording.sampled = false;
        let end = StreamEnd {
            end_unix_nanos: 5_000,
            kind: SpanKind::Server,
            facts: SpanFacts {
                status_code: Some(503),
                ..SpanFacts::default()
            },
            response_flags: String::new(),
            recorded_because: Some(RecordedBecause::Error),
        };
        let span = decoded(&recording, &end);
        let because = span
            .attributes
            .iter()
            .find(|a| a.key == RecordedBecause::ATTRIBUTE)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value);
        use crate::otlp::proto::common::any_value::Value;
        assert_eq!(because, Some(Value::StringValue("error".into())));
        assert_eq!(span.flags & 0x1, 0, "the trace flags stay unsampled");
    }
}
