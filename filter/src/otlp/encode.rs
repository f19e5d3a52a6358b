//! Encodes one finished span straight to OTLP `Span` protobuf bytes, from the borrowed span,
//! without building the generated message types first.

use super::wire::*;
use crate::span::{Attribute, AttributeValue, FinishedSpan, Link, SpanKind, StatusCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanLimits {
    /// String attribute values are cut to this many bytes (at a character boundary).
    pub max_value_len: usize,
    /// Attributes past this count are dropped and counted in `dropped_attributes_count`.
    pub max_attributes: usize,
}

impl Default for SpanLimits {
    fn default() -> Self {
        SpanLimits {
            max_value_len: 256,
            max_attributes: 128,
        }
    }
}

const SAMPLED_FLAG: u32 = 0x01;
const RANDOM_FLAG: u32 = 0x02;
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// `KeyValue` body. AnyValue is a oneof, so even empty and zero values are written.
pub fn put_attribute(out: &mut Vec<u8>, field: u32, attribute: &Attribute, max_value_len: usize) {
    if let AttributeValue::Str(text) = attribute.value {
        let value = truncate(text, max_value_len).as_bytes();
        if put_short_text_attribute(out, field, attribute.key.as_bytes(), value) {
            return;
        }
    }
    put_message(out, field, |out| {
        put_str(out, 1, attribute.key);
        put_message(out, 2, |out| match attribute.value {
            AttributeValue::Str(text) => {
                put_bytes(out, 1, truncate(text, max_value_len).as_bytes())
            }
            AttributeValue::Bool(value) => {
                put_tag(out, 2, VARINT);
                put_varint(out, value as u64);
            }
            AttributeValue::Int(value) => {
                put_tag(out, 3, VARINT);
                put_varint(out, value as u64);
            }
            AttributeValue::Double(value) => {
                put_tag(out, 4, FIXED64);
                out.extend_from_slice(&value.to_bits().to_le_bytes());
            }
        });
    });
}

/// Most attributes are a short key and a short text: every length of their `KeyValue` fits one
/// byte and is known before a byte is written, so it is written in four pieces rather than
/// through nested messages. False, with nothing written, for any other; an empty key is left
/// out on the general path, as proto3 does.
fn put_short_text_attribute(out: &mut Vec<u8>, field: u32, key: &[u8], value: &[u8]) -> bool {
    // KeyValue { key (1): key, value (2): AnyValue { string_value (1): value } }
    let key_value_len = 2 + key.len() + 4 + value.len();
    if field >= 16 || key.is_empty() || key_value_len >= 0x80 {
        return false;
    }
    out.reserve(2 + key_value_len);
    out.extend_from_slice(&[
        short_tag(field, LENGTH_DELIMITED),
        key_value_len as u8,
        short_tag(1, LENGTH_DELIMITED),
        key.len() as u8,
    ]);
    out.extend_from_slice(key);
    out.extend_from_slice(&[
        short_tag(2, LENGTH_DELIMITED),
        2 + value.len() as u8,
        short_tag(1, LENGTH_DELIMITED),
        value.len() as u8,
    ]);
    out.extend_from_slice(value);
    true
}

fn put_link(out: &mut Vec<u8>, link: &Link) {
    put_message(out, 13, |out| {
        put_bytes(out, 1, &link.trace_id.0);
        put_bytes(out, 2, &link.span_id.0);
        put_str(out, 3, link.trace_state);
        let sampled = if link.sampled { SAMPLED_FLAG } else { 0 };
        put_fixed32(out, 6, sampled | HAS_IS_REMOTE | IS_REMOTE);
    });
}

/// Appends the bytes of one OTLP `Span` message (without an outer field tag) to `out`.
pub fn encode_span(span: &FinishedSpan, limits: &SpanLimits, out: &mut Vec<u8>) {
    put_bytes(out, 1, &span.trace_id.0);
    put_bytes(out, 2, &span.span_id.0);
    put_str(out, 3, span.trace_state);
    if let Some(parent) = span.parent_span_id {
        put_bytes(out, 4, &parent.0);
    }
    put_str(out, 5, span.name);
    put_uint(
        out,
        6,
        match span.kind {
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        },
    );
    put_fixed64(out, 7, span.start_unix_nanos);
    put_fixed64(out, 8, span.end_unix_nanos);
    let kept = span.attributes.len().min(limits.max_attributes);
    for attribute in &span.attributes[..kept] {
        put_attribute(out, 9, attribute, limits.max_value_len);
    }
    put_uint(out, 10, (span.attributes.len() - kept) as u64);
    for link in span.links {
        put_link(out, link);
    }
    let code = match span.status {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    };
    if code != 0 || !span.status_message.is_empty() {
        put_message(out, 15, |out| {
            put_str(out, 2, truncate(span.status_message, limits.max_value_len));
            put_uint(out, 3, code);
        });
    }
    let mut flags = HAS_IS_REMOTE;
    if span.sampled {
        flags |= SAMPLED_FLAG;
    }
    if span.random {
        flags |= RANDOM_FLAG;
    }
    if span.parent_is_remote {
        flags |= IS_REMOTE;
    }
    put_fixed32(out, 16, flags);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{SpanId, TraceId};
    use crate::otlp::proto::{common::any_value::Value, trace};
    use prost::Message;

    pub(crate) fn sample_span<'a>(
        attributes: &'a [Attribute<'a>],
        links: &'a [Link<'a>],
    ) -> FinishedSpan<'a> {
        FinishedSpan {
            trace_id: TraceId([0x4b; 16]),
            span_id: SpanId([0x01, 2, 3, 4, 5, 6, 7, 8]),
            parent_span_id: Some(SpanId([9; 8])),
            parent_is_remote: true,
            trace_state: "ot=th:8",
            sampled: true,
            random: true,
            name: "GET /orders/{id}",
            kind: SpanKind::Server,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_250_000_000,
            attributes,
            links,
            status: StatusCode::Error,
            status_message: "upstream connection failure",
        }
    }

    #[test]
    fn decodes_with_prost_field_by_field() {
        let attributes = [
            Attribute {
                key: "http.request.method",
                value: AttributeValue::Str("GET"),
            },
            Attribute {
                key: "http.response.status_code",
                value: AttributeValue::Int(503),
            },
            Attribute {
                key: "negative",
                value: AttributeValue::Int(-7),
            },
            Attribute {
                key: "flag",
                value: AttributeValue::Bool(false),
            },
            Attribute {
                key: "ratio",
                value: AttributeValue::Double(0.25),
            },
            Attribute {
                key: "empty",
                value: AttributeValue::Str(""),
            },
            Attribute {
                key: "long",
                value: AttributeValue::Str(&"é".repeat(100)),
            },
        ];
        let links = [Link {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([8; 8]),
            trace_state: "a=1",
            sampled: true,
        }];
        let span = sample_span(&attributes, &links);
        let mut out = Vec::new();
        encode_span(
            &span,
            &SpanLimits {
                max_value_len: 11,
                max_attributes: 6,
            },
            &mut out,
        );
        let decoded = trace::Span::decode(out.as_slice()).unwrap();
        assert_eq!(decoded.trace_id, vec![0x4b; 16]);
        assert_eq!(decoded.span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(decoded.parent_span_id, vec![9; 8]);
        assert_eq!(decoded.trace_state, "ot=th:8");
        assert_eq!(decoded.name, "GET /orders/{id}");
        assert_eq!(decoded.kind, trace::span::SpanKind::Server as i32);
        assert_eq!(decoded.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(decoded.end_time_unix_nano, 1_700_000_000_250_000_000);
        assert_eq!(decoded.flags, 0x01 | 0x02 | 0x100 | 0x200);
        assert_eq!(decoded.attributes.len(), 6);
        assert_eq!(decoded.dropped_attributes_count, 1);
        let value = |i: usize| {
            decoded.attributes[i]
                .value
                .as_ref()
                .unwrap()
                .value
                .clone()
                .unwrap()
        };
        assert_eq!(value(0), Value::StringValue("GET".into()));
        assert_eq!(value(1), Value::IntValue(503));
        assert_eq!(value(2), Value::IntValue(-7));
        assert_eq!(value(3), Value::BoolValue(false));
        assert_eq!(value(4), Value::DoubleValue(0.25));
        assert_eq!(value(5), Value::StringValue(String::new()));
        let status = decoded.status.unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "upstream co"));
        assert_eq!(decoded.links.len(), 1);
        assert_eq!(decoded.links[0].trace_state, "a=1");
        assert_eq!(decoded.links[0].flags, 0x301);
    }

    /// Byte for byte what prost writes for the same `KeyValue`, across every value kind and
    /// the lengths that need a second varint byte at each level.
    #[test]
    fn attributes_match_prost_byte_for_byte() {
        use crate::otlp::proto::common::{AnyValue, KeyValue};
        let long_key = "k".repeat(130);
        let long_value = "v".repeat(300);
        let near = "n".repeat(125);
        let cases: Vec<(&str, AttributeValue, Value)> = vec![
            (
                "http.request.method",
                AttributeValue::Str("GET"),
                Value::StringValue("GET".into()),
            ),
            (
                "",
                AttributeValue::Str("no key"),
                Value::StringValue("no key".into()),
            ),
            (
                "empty",
                AttributeValue::Str(""),
                Value::StringValue(String::new()),
            ),
            (
                "long",
                AttributeValue::Str(&long_value),
                Value::StringValue(long_value.clone()),
            ),
            (
                "near",
                AttributeValue::Str(&near),
                Value::StringValue(near.clone()),
            ),
            (&long_key, AttributeValue::Int(1), Value::IntValue(1)),
            ("zero", AttributeValue::Int(0), Value::IntValue(0)),
            ("negative", AttributeValue::Int(-7), Value::IntValue(-7)),
            ("yes", AttributeValue::Bool(true), Value::BoolValue(true)),
            ("no", AttributeValue::Bool(false), Value::BoolValue(false)),
            (
                "ratio",
                AttributeValue::Double(0.25),
                Value::DoubleValue(0.25),
            ),
        ];
        for (key, value, expected) in cases {
            let mut ours = Vec::new();
            put_attribute(&mut ours, 9, &Attribute { key, value }, 1024);
            let body = KeyValue {
                key: key.to_string(),
                value: Some(AnyValue {
                    value: Some(expected),
                }),
            }
            .encode_to_vec();
            let mut theirs = vec![0x4a];
            put_varint(&mut theirs, body.len() as u64);
            theirs.extend_from_slice(&body);
            assert_eq!(ours, theirs, "{key:.20}");
        }
    }

    proptest::proptest! {
        /// `put_attribute` against prost (lengths that fit one byte and those that do not, values
        /// cut to the limit), with keys and values around the boundaries.
        #[test]
        fn attributes_of_any_length_match_prost(
            key in "[a-z.é]{0,70}",
            text in "[a-zé ]{0,140}",
            number in proptest::prelude::any::<i64>(),
            as_text in proptest::prelude::any::<bool>(),
            max_value_len in 0usize..160,
            field in 1u32..20,
        ) {
            use crate::otlp::proto::common::{AnyValue, KeyValue};
            let (value, expected) = if as_text {
                let kept = truncate(&text, max_value_len);
                (AttributeValue::Str(&text), Value::StringValue(kept.to_string()))
            } else {
                (AttributeValue::Int(number), Value::IntValue(number))
            };
            let mut ours = vec![7];
            put_attribute(&mut ours, field, &Attribute { key: &key, value }, max_value_len);
            let body = KeyValue {
                key: key.clone(),
                value: Some(AnyValue { value: Some(expected) }),
            }
            .encode_to_vec();
            let mut theirs = vec![7];
            put_tag(&mut theirs, field, LENGTH_DELIMITED);
            put_varint(&mut theirs, body.len() as u64);
            theirs.extend_from_slice(&body);
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        let long = "é".repeat(100);
        let attributes = [Attribute {
            key: "long",
            value: AttributeValue::Str(&long),
        }];
        let span = sample_span(&attributes, &[]);
        let mut out = Vec::new();
        encode_span(
            &span,
            &SpanLimits {
                max_value_len: 11,
                max_attributes: 128,
            },
            &mut out,
        );
        let decoded = trace::Span::decode(out.as_slice()).unwrap();
        let Some(Value::StringValue(text)) = decoded.attributes[0].value.clone().unwrap().value
        else {
            panic!()
        };
        assert_eq!(text, "é".repeat(5));
    }

    #[test]
    fn unset_status_and_root_spans_omit_fields() {
        let mut span = sample_span(&[], &[]);
        span.parent_span_id = None;
        span.parent_is_remote = false;
        span.status = StatusCode::Unset;
        span.status_message = "";
        span.trace_state = "";
        span.kind = SpanKind::Client;
        let mut out = Vec::new();
        encode_span(&span, &SpanLimits::default(), &mut out);
        let decoded = trace::Span::decode(out.as_slice()).unwrap();
        assert!(
            decoded.parent_span_id.is_empty()
                && decoded.status.is_none()
                && decoded.trace_state.is_empty()
        );
        assert_eq!(decoded.kind, trace::span::SpanKind::Client as i32);
        assert_eq!(decoded.flags, 0x103);
    }
}
