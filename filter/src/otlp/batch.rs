//! Assembles `ExportTraceServiceRequest` payloads from already-encoded spans. The resource and
//! scope never change for a plugin, so their bytes are built once.

use super::wire::{put_message, put_str, put_varint, varint_len};

const SPANS_FIELD_TAG: u8 = (2 << 3) | 2;
const RESOURCE_SPANS_FIELD_TAG: u8 = (1 << 3) | 2;
const SCOPE_SPANS_FIELD_TAG: u8 = (2 << 3) | 2;

pub struct BatchEncoder {
    /// `resource` field (1) of ResourceSpans, tag included.
    resource_field: Vec<u8>,
    /// `scope` field (1) of ScopeSpans, tag included.
    scope_field: Vec<u8>,
}

impl BatchEncoder {
    pub fn new(
        resource_attributes: &[(String, String)],
        scope_name: &str,
        scope_version: &str,
    ) -> Self {
        let mut resource_field = Vec::new();
        // Resource.attributes (1): KeyValue { key (1), value (2): AnyValue { string_value (1) } }.
        put_message(&mut resource_field, 1, |resource| {
            for (key, value) in resource_attributes {
                put_message(resource, 1, |attribute| {
                    put_str(attribute, 1, key);
                    put_message(attribute, 2, |any| put_str(any, 1, value));
                });
            }
        });
        let mut scope_field = Vec::new();
        // InstrumentationScope { name (1), version (2) }.
        put_message(&mut scope_field, 1, |scope| {
            put_str(scope, 1, scope_name);
            put_str(scope, 2, scope_version);
        });
        BatchEncoder {
            resource_field,
            scope_field,
        }
    }

    /// One request holding every span: one ResourceSpans, one ScopeSpans; a single allocation.
    pub fn encode_request(&self, spans: &[Vec<u8>]) -> Vec<u8> {
        let spans_len: usize = spans
            .iter()
            .map(|s| 1 + varint_len(s.len() as u64) + s.len())
            .sum();
        let scope_spans_len = self.scope_field.len() + spans_len;
        let resource_spans_len =
            self.resource_field.len() + 1 + varint_len(scope_spans_len as u64) + scope_spans_len;
        let total = 1 + varint_len(resource_spans_len as u64) + resource_spans_len;
        let mut out = Vec::with_capacity(total);
        out.push(RESOURCE_SPANS_FIELD_TAG);
        put_varint(&mut out, resource_spans_len as u64);
        out.extend_from_slice(&self.resource_field);
        out.push(SCOPE_SPANS_FIELD_TAG);
        put_varint(&mut out, scope_spans_len as u64);
        out.extend_from_slice(&self.scope_field);
        for span in spans {
            out.push(SPANS_FIELD_TAG);
            put_varint(&mut out, span.len() as u64);
            out.extend_from_slice(span);
        }
        debug_assert_eq!(out.len(), total);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{SpanId, TraceId};
    use crate::otlp::encode::{encode_span, SpanLimits};
    use crate::otlp::proto::collector::ExportTraceServiceRequest;
    use crate::span::{Attribute, AttributeValue, FinishedSpan, SpanKind, StatusCode};
    use prost::Message;

    fn encoded(n: u8, padding: usize) -> Vec<u8> {
        let pad = "x".repeat(padding);
        let attributes = [Attribute {
            key: "pad",
            value: AttributeValue::Str(&pad),
        }];
        let span = FinishedSpan {
            trace_id: TraceId([n; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: None,
            parent_is_remote: false,
            trace_state: "",
            sampled: true,
            random: false,
            name: "GET /",
            kind: SpanKind::Server,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: &attributes,
            links: &[],
            status: StatusCode::Unset,
            status_message: "",
        };
        let mut out = Vec::new();
        encode_span(
            &span,
            &SpanLimits {
                max_value_len: 100_000,
                max_attributes: 128,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn requests_decode_with_every_span_resource_and_scope() {
        let encoder = BatchEncoder::new(
            &[
                ("service.name".into(), "checkout".into()),
                ("k8s.pod.name".into(), "p-1".into()),
            ],
            "sidetrace",
            "0.1.0",
        );
        for (count, padding) in [(0usize, 0usize), (1, 0), (3, 50), (200, 10), (2, 20_000)] {
            let spans: Vec<Vec<u8>> = (0..count).map(|i| encoded(i as u8 + 1, padding)).collect();
            let payload = encoder.encode_request(&spans);
            let request = ExportTraceServiceRequest::decode(payload.as_slice()).unwrap();
            assert_eq!(request.resource_spans.len(), 1);
            let rs = &request.resource_spans[0];
            let attrs = &rs.resource.as_ref().unwrap().attributes;
            assert_eq!(attrs[0].key, "service.name");
            assert_eq!(attrs.len(), 2);
            let value = attrs[1].value.as_ref().and_then(|v| v.value.as_ref());
            assert_eq!(
                value,
                Some(&crate::otlp::proto::common::any_value::Value::StringValue(
                    "p-1".into()
                ))
            );
            assert_eq!(rs.scope_spans.len(), 1);
            let ss = &rs.scope_spans[0];
            assert_eq!(ss.scope.as_ref().unwrap().name, "sidetrace");
            assert_eq!(ss.scope.as_ref().unwrap().version, "0.1.0");
            assert_eq!(ss.spans.len(), count, "{count} spans, padding {padding}");
            for (i, span) in ss.spans.iter().enumerate() {
                assert_eq!(span.span_id, vec![i as u8 + 1; 8]);
            }
        }
    }
}
