//! Jaeger `uber-trace-id: {trace}:{span}:{parent}:{flags}` and `uberctx-<key>` baggage.

use super::baggage::{percent_decode, percent_encode};
use super::{Extracted, Getter, Setter};
use crate::context::{Format, Sampling, SpanContext, SpanId, TraceId};
use crate::hex;

pub const HEADER: &str = "uber-trace-id";
pub const BAGGAGE_PREFIX: &str = "uberctx-";
const MAX_BAGGAGE_ITEMS: usize = 64;
const MAX_BAGGAGE_BYTES: usize = 8192;
const SAMPLED: u8 = 0x01;
const DEBUG: u8 = 0x02;

pub fn extract(carrier: &impl Getter) -> Extracted {
    let Some(raw) = carrier.get(HEADER) else {
        return Extracted::Absent;
    };
    // Some clients URL-encode the whole value (`%3A` for `:`).
    let decoded;
    let value = if raw.contains('%') {
        decoded = percent_decode(raw);
        decoded.as_str()
    } else {
        raw
    };
    let mut fields = value.trim().split(':');
    let (Some(trace), Some(span), Some(parent), Some(flags), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Extracted::Invalid;
    };
    let trace_id = hex::decode_padded::<16>(trace.as_bytes(), false)
        .map(TraceId)
        .filter(TraceId::is_valid);
    let span_id = hex::decode_padded::<8>(span.as_bytes(), false)
        .map(SpanId)
        .filter(SpanId::is_valid);
    let parent_ok = hex::decode_padded::<8>(parent.as_bytes(), false).is_some();
    let flags = hex::decode_padded::<1>(flags.as_bytes(), false).map(|f| f[0]);
    match (trace_id, span_id, parent_ok, flags) {
        (Some(trace_id), Some(span_id), true, Some(flags)) => {
            let debug = flags & DEBUG != 0;
            let sampling = if flags & SAMPLED != 0 || debug {
                Sampling::Sampled
            } else {
                Sampling::NotSampled
            };
            let mut ctx = SpanContext::new(trace_id, span_id, sampling, Format::Jaeger);
            ctx.debug = debug;
            Extracted::Valid(ctx)
        }
        _ => Extracted::Invalid,
    }
}

pub fn inject(ctx: &SpanContext, carrier: &mut impl Setter) {
    let flags = match (ctx.debug, ctx.is_sampled()) {
        (true, _) => ":0:3",
        (false, true) => ":0:1",
        (false, false) => ":0:0",
    };
    let mut value = String::with_capacity(53);
    hex::push(&mut value, &ctx.trace_id.0);
    value.push(':');
    hex::push(&mut value, &ctx.span_id.0);
    value.push_str(flags);
    carrier.set(HEADER, &value);
}

/// `uberctx-<key>` items, values percent-decoded; bounded like W3C baggage.
pub fn extract_baggage(carrier: &impl Getter) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut bytes = 0;
    carrier.for_each_prefixed(BAGGAGE_PREFIX, &mut |name, value| {
        let Some(key) = name.strip_prefix(BAGGAGE_PREFIX) else {
            return;
        };
        bytes += key.len() + value.len();
        if key.is_empty() || items.len() == MAX_BAGGAGE_ITEMS || bytes > MAX_BAGGAGE_BYTES {
            return;
        }
        items.push((key.to_string(), percent_decode(value.trim())));
    });
    items
}

pub fn inject_baggage(items: &[(String, String)], carrier: &mut impl Setter) {
    for (key, value) in items {
        let mut encoded = String::with_capacity(value.len());
        percent_encode(value, &mut encoded);
        carrier.set(
            &format!("{BAGGAGE_PREFIX}{}", key.to_ascii_lowercase()),
            &encoded,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::Headers;

    fn extract_one(value: &str) -> Extracted {
        extract(&Headers::from_pairs([("uber-trace-id", value)]))
    }

    #[test]
    fn reads_full_short_and_encoded_ids() {
        let cases: &[(&str, &str, &str, Sampling, bool)] = &[
            (
                "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1",
                "80f198ee56343ba864fe8b2a57d3eff7",
                "e457b5a2e4d86bd1",
                Sampling::Sampled,
                false,
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:05e3ac9a4f6e3b90:0",
                "80f198ee56343ba864fe8b2a57d3eff7",
                "e457b5a2e4d86bd1",
                Sampling::NotSampled,
                false,
            ),
            (
                "abc:def:0:3",
                "00000000000000000000000000000abc",
                "0000000000000def",
                Sampling::Sampled,
                true,
            ),
            (
                "abc:def:0:2",
                "00000000000000000000000000000abc",
                "0000000000000def",
                Sampling::Sampled,
                true,
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7%3Ae457b5a2e4d86bd1%3A0%3A1",
                "80f198ee56343ba864fe8b2a57d3eff7",
                "e457b5a2e4d86bd1",
                Sampling::Sampled,
                false,
            ),
            (
                "ABC:DEF:0:01",
                "00000000000000000000000000000abc",
                "0000000000000def",
                Sampling::Sampled,
                false,
            ),
        ];
        for (header, trace, span, sampling, debug) in cases {
            match extract_one(header) {
                Extracted::Valid(ctx) => {
                    assert_eq!(ctx.trace_id.to_string(), *trace, "{header}");
                    assert_eq!(ctx.span_id.to_string(), *span);
                    assert_eq!((ctx.sampling, ctx.debug), (*sampling, *debug), "{header}");
                    assert_eq!(ctx.origin, Format::Jaeger);
                }
                other => panic!("{header}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "a:b:c",
            "a:b:0:1:x",
            "0:def:0:1",
            "abc:0:0:1",
            "xyz:def:0:1",
            "abc:def:0:zz",
            "abc:def:0:",
            "abc:def:0:100",
            "80f198ee56343ba864fe8b2a57d3eff7a:e457b5a2e4d86bd1:0:1",
            "abc:def:q:1",
        ] {
            assert_eq!(extract_one(bad), Extracted::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn injects_full_ids_with_parent_zero() {
        let Extracted::Valid(mut ctx) = extract_one("abc:def:123:1") else {
            panic!()
        };
        let mut headers = Headers::new();
        inject(&ctx, &mut headers);
        assert_eq!(
            headers.get(HEADER),
            Some("00000000000000000000000000000abc:0000000000000def:0:1")
        );
        ctx.debug = true;
        inject(&ctx, &mut headers);
        assert!(headers.get(HEADER).unwrap().ends_with(":0:3"));
        ctx.debug = false;
        ctx.sampling = Sampling::NotSampled;
        inject(&ctx, &mut headers);
        assert!(headers.get(HEADER).unwrap().ends_with(":0:0"));
    }

    #[test]
    fn baggage_items_round_trip() {
        let headers = Headers::from_pairs([
            ("uberctx-user", "alice%20b"),
            ("uberctx-", "x"),
            ("other", "1"),
            ("UberCtx-Tier", "gold"),
        ]);
        let items = extract_baggage(&headers);
        assert_eq!(
            items,
            vec![
                ("user".to_string(), "alice b".to_string()),
                ("tier".to_string(), "gold".to_string())
            ]
        );
        let mut out = Headers::new();
        inject_baggage(&items, &mut out);
        assert_eq!(out.get("uberctx-user"), Some("alice%20b"));
        assert_eq!(extract_baggage(&out), items);
    }
}
