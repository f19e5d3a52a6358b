//! W3C Trace Context Level 2 `traceparent` (with `tracestate` carried alongside).

use super::{tracestate, Extracted, Getter, Setter};
use crate::context::{Format, Sampling, SpanContext, SpanId, TraceId};
use crate::hex;

pub const HEADERS: [&str; 2] = ["traceparent", "tracestate"];

const SAMPLED: u8 = 0x01;
const RANDOM: u8 = 0x02;
/// `00-` + 32 + `-` + 16 + `-` + 2.
const LENGTH: usize = 55;

pub fn extract(carrier: &impl Getter) -> Extracted {
    let mut lines = 0;
    let mut first = None;
    carrier.get_all(HEADERS[0], &mut |line| {
        lines += 1;
        first.get_or_insert(line);
    });
    let Some(value) = first else {
        return Extracted::Absent;
    };
    // Two traceparent headers name two parents: the W3C test suite expects a new trace.
    if lines > 1 {
        return Extracted::Invalid;
    }
    match parse_traceparent(value.as_bytes()) {
        Some(mut context) => {
            context.trace_state = tracestate::parse(carrier);
            Extracted::Valid(context)
        }
        None => Extracted::Invalid,
    }
}

/// Parses at the fixed offsets every version shares; version 00 must be exactly 55 bytes, later
/// versions may append `-`-separated fields, which are ignored (the context is re-emitted as 00).
pub(crate) fn parse_traceparent(value: &[u8]) -> Option<SpanContext> {
    if value.len() < LENGTH {
        return None;
    }
    let mut version = [0u8; 1];
    hex::decode_into(&value[0..2], &mut version, true)?;
    match version[0] {
        0xff => return None,
        0x00 if value.len() != LENGTH => return None,
        0x00 => {}
        _ if value.len() > LENGTH && value[LENGTH] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace = [0u8; 16];
    hex::decode_into(&value[3..35], &mut trace, true)?;
    let mut span = [0u8; 8];
    hex::decode_into(&value[36..52], &mut span, true)?;
    let mut flags = [0u8; 1];
    hex::decode_into(&value[53..55], &mut flags, true)?;
    let (trace_id, span_id) = (TraceId(trace), SpanId(span));
    if !trace_id.is_valid() || !span_id.is_valid() {
        return None;
    }
    let sampling = if flags[0] & SAMPLED != 0 {
        Sampling::Sampled
    } else {
        Sampling::NotSampled
    };
    let mut context = SpanContext::new(trace_id, span_id, sampling, Format::TraceContext);
    context.random = flags[0] & RANDOM != 0;
    Some(context)
}

/// The context's `traceparent`, always version 00, written in place: every request writes one.
fn format(context: &SpanContext) -> TraceparentText {
    let mut flags = 0u8;
    if context.is_sampled() {
        flags |= SAMPLED;
    }
    if context.random {
        flags |= RANDOM;
    }
    let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex::encode_into(&context.trace_id.0, &mut text[3..35]);
    hex::encode_into(&context.span_id.0, &mut text[36..52]);
    hex::encode_into(&[flags], &mut text[53..55]);
    TraceparentText(text)
}

/// A version-00 `traceparent` value.
struct TraceparentText([u8; 55]);

impl TraceparentText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a traceparent is ASCII")
    }
}

pub fn inject(context: &SpanContext, carrier: &mut impl Setter) {
    carrier.set(HEADERS[0], format(context).as_str());
    if context.trace_state.is_empty() {
        carrier.remove(HEADERS[1]);
    } else {
        carrier.set(HEADERS[1], context.trace_state.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::Headers;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn extract_one(traceparent: &str) -> Extracted {
        extract(&Headers::from_pairs([("traceparent", traceparent)]))
    }

    #[test]
    fn accepts_the_spec_examples_and_future_versions() {
        let cases: &[(&str, bool, bool)] = &[
            (VALID, true, false),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                false,
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
                true,
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
                false,
                true,
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
                false,
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future",
                true,
                false,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
                true,
                false,
            ),
        ];
        for (header, sampled, random) in cases {
            match extract_one(header) {
                Extracted::Valid(ctx) => {
                    assert_eq!(
                        ctx.trace_id.to_string(),
                        "4bf92f3577b34da6a3ce929d0e0e4736",
                        "{header}"
                    );
                    assert_eq!(ctx.span_id.to_string(), "00f067aa0ba902b7");
                    assert_eq!(ctx.is_sampled(), *sampled, "{header}");
                    assert_eq!(ctx.random, *random, "{header}");
                    assert_eq!(ctx.origin, Format::TraceContext);
                }
                other => panic!("{header}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        let cases = [
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e47361-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-011",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "",
            "00-€bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ];
        for header in cases {
            assert_eq!(extract_one(header), Extracted::Invalid, "{header:?}");
        }
        assert_eq!(extract(&Headers::new()), Extracted::Absent);
        let twice = Headers::from_pairs([("traceparent", VALID), ("traceparent", VALID)]);
        assert_eq!(extract(&twice), Extracted::Invalid);
    }

    #[test]
    fn tracestate_only_with_a_valid_traceparent() {
        let headers = Headers::from_pairs([
            ("traceparent", VALID),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ]);
        let Extracted::Valid(ctx) = extract(&headers) else {
            panic!()
        };
        assert_eq!(ctx.trace_state.as_str(), "a=1,b=2");
        let headers = Headers::from_pairs([("traceparent", "garbage"), ("tracestate", "a=1")]);
        assert_eq!(extract(&headers), Extracted::Invalid);
        let headers = Headers::from_pairs([("tracestate", "a=1")]);
        assert_eq!(extract(&headers), Extracted::Absent);
    }

    #[test]
    fn injects_version_00_and_drops_an_empty_tracestate() {
        let Extracted::Valid(mut ctx) =
            extract_one("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-x")
        else {
            panic!()
        };
        let mut headers = Headers::from_pairs([("tracestate", "stale=1")]);
        inject(&ctx, &mut headers);
        assert_eq!(
            headers.get("traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        );
        assert_eq!(headers.get("tracestate"), None);
        ctx.sampling = Sampling::Deferred;
        ctx.random = false;
        ctx.debug = true;
        ctx.trace_state = crate::context::TraceState::new("k=v");
        inject(&ctx, &mut headers);
        assert_eq!(
            headers.get("traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(headers.get("tracestate"), Some("k=v"));
    }
}
