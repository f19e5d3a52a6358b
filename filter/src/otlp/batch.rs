//! Assembles `ExportTraceServiceRequest` payloads in place: spans are appended to a batch buffer
//! as they finish, after room for the request's header, which is written once the batch is
//! complete. The resource and scope never change for a plugin, so their bytes are built once.

use super::wire::{put_message, put_str, put_varint, short_tag, varint_len, LENGTH_DELIMITED};

const RESOURCE_SPANS_FIELD_TAG: u8 = short_tag(1, LENGTH_DELIMITED);
const SCOPE_SPANS_FIELD_TAG: u8 = short_tag(2, LENGTH_DELIMITED);

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

    /// Bytes a batch buffer keeps before its spans for `finish` to write the request's header
    /// in: the ResourceSpans and ScopeSpans tags, their lengths at their widest, the resource
    /// and the scope.
    pub fn header_room(&self) -> usize {
        2 * (1 + MAX_LENGTH_WIDTH) + self.resource_field.len() + self.scope_field.len()
    }

    /// Makes a batch buffer a request: `buffer` is `header_room()` bytes and then spans framed by
    /// `append_span`. Writes one ResourceSpans holding one ScopeSpans, its header ending where
    /// the first span starts, and returns where it begins.
    pub fn finish(&self, buffer: &mut [u8]) -> usize {
        let room = self.header_room();
        let spans_len = buffer.len() - room;
        let scope_spans_len = self.scope_field.len() + spans_len;
        let resource_spans_len =
            self.resource_field.len() + 1 + varint_len(scope_spans_len as u64) + scope_spans_len;
        let mut header = Vec::with_capacity(room);
        header.push(RESOURCE_SPANS_FIELD_TAG);
        put_varint(&mut header, resource_spans_len as u64);
        header.extend_from_slice(&self.resource_field);
        header.push(SCOPE_SPANS_FIELD_TAG);
        put_varint(&mut header, scope_spans_len as u64);
        header.extend_from_slice(&self.scope_field);
        let start = room - header.len();
        buffer[start..room].copy_from_slice(&header);
        start
    }
}

/// The proxy takes a batch's length as a `u32`, so a length's varint is at most five bytes.
const MAX_LENGTH_WIDTH: usize = 5;

/// Appends one span as a ScopeSpans `spans` field (2): its tag, its length, and what
/// `encode_span` appends.
pub fn append_span(out: &mut Vec<u8>, encode_span: impl FnOnce(&mut Vec<u8>)) {
    put_message(out, 2, encode_span);
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

    /// The request assembled from separately encoded spans, every length at its shortest.
    fn encoded_by_copying(encoder: &BatchEncoder, spans: &[Vec<u8>]) -> Vec<u8> {
        let mut scope_spans = encoder.scope_field.clone();
        for span in spans {
            crate::otlp::wire::put_bytes(&mut scope_spans, 2, span);
        }
        let mut resource_spans = encoder.resource_field.clone();
        resource_spans.push(SCOPE_SPANS_FIELD_TAG);
        put_varint(&mut resource_spans, scope_spans.len() as u64);
        resource_spans.extend_from_slice(&scope_spans);
        let mut request = vec![RESOURCE_SPANS_FIELD_TAG];
        put_varint(&mut request, resource_spans.len() as u64);
        request.extend_from_slice(&resource_spans);
        request
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
        // Spans of one-, two- and three-byte lengths; batches of 0 to 200.
        for (count, padding) in [
            (0usize, 0usize),
            (1, 0),
            (3, 50),
            (4, 300),
            (200, 10),
            (2, 20_000),
        ] {
            let spans: Vec<Vec<u8>> = (0..count).map(|i| encoded(i as u8 + 1, padding)).collect();
            let mut buffer = vec![0xee; encoder.header_room()];
            for span in &spans {
                append_span(&mut buffer, |out| out.extend_from_slice(span));
            }
            let start = encoder.finish(&mut buffer);
            let payload = &buffer[start..];
            assert_eq!(
                payload,
                encoded_by_copying(&encoder, &spans).as_slice(),
                "{count} spans, padding {padding}: the request built span by span"
            );
            let request = ExportTraceServiceRequest::decode(payload).unwrap();
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
