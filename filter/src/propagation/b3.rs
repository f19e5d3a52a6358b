//! Zipkin B3: the single `b3` header and the multi-header `X-B3-*` form.

use super::{Extracted, Getter, Setter};
use crate::context::{Format, Sampling, SpanContext, SpanId, TraceId};
use crate::hex;

pub const SINGLE_HEADER: &str = "b3";
pub const MULTI_HEADERS: [&str; 5] = [
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-b3-parentspanid",
];
const TRACE_ID: &str = MULTI_HEADERS[0];
const SPAN_ID: &str = MULTI_HEADERS[1];
const SAMPLED: &str = MULTI_HEADERS[2];
const FLAGS: &str = MULTI_HEADERS[3];
const PARENT_SPAN_ID: &str = MULTI_HEADERS[4];

/// 64-bit ids are left-padded to 128 bits, so they map onto W3C and OTLP unchanged.
fn trace_id(text: &str) -> Option<TraceId> {
    if text.len() != 16 && text.len() != 32 {
        return None;
    }
    hex::decode_padded::<16>(text.as_bytes(), false)
        .map(TraceId)
        .filter(TraceId::is_valid)
}

fn span_id(text: &str) -> Option<SpanId> {
    SpanId::from_hex(text, false)
}

fn context(trace: &str, span: &str, sampling: Sampling, debug: bool, origin: Format) -> Extracted {
    match (trace_id(trace), span_id(span)) {
        (Some(trace_id), Some(span_id)) => {
            let mut ctx = SpanContext::new(trace_id, span_id, sampling, origin);
            ctx.debug = debug;
            Extracted::Valid(ctx)
        }
        _ => Extracted::Invalid,
    }
}

/// `0`, `1`, `d` → (sampling, debug).
fn single_sampling(text: &str) -> Option<(Sampling, bool)> {
    match text {
        "0" => Some((Sampling::NotSampled, false)),
        "1" => Some((Sampling::Sampled, false)),
        "d" => Some((Sampling::Sampled, true)),
        _ => None,
    }
}

pub fn extract_single(carrier: &impl Getter) -> Extracted {
    let Some(value) = carrier.get(SINGLE_HEADER) else {
        return Extracted::Absent;
    };
    let value = value.trim();
    if let Some((sampling, _)) = single_sampling(value) {
        return Extracted::DecisionOnly(sampling);
    }
    let mut fields = value.split('-');
    let (Some(trace), Some(span)) = (fields.next(), fields.next()) else {
        return Extracted::Invalid;
    };
    let (sampling, debug) = match fields.next() {
        None => (Sampling::Deferred, false),
        Some(text) => match single_sampling(text) {
            Some(decision) => decision,
            None => return Extracted::Invalid,
        },
    };
    // The caller's parent is not ours to propagate, but a malformed one makes the header invalid.
    if let Some(parent) = fields.next() {
        if span_id(parent).is_none() {
            return Extracted::Invalid;
        }
    }
    if fields.next().is_some() {
        return Extracted::Invalid;
    }
    context(trace, span, sampling, debug, Format::B3)
}

pub fn extract_multi(carrier: &impl Getter) -> Extracted {
    let debug = match carrier.get(FLAGS).map(str::trim) {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return Extracted::Invalid,
    };
    let sampling = match carrier.get(SAMPLED).map(str::trim) {
        None => Sampling::Deferred,
        Some("1") | Some("true") => Sampling::Sampled,
        Some("0") | Some("false") => Sampling::NotSampled,
        Some(_) => return Extracted::Invalid,
    };
    let sampling = if debug { Sampling::Sampled } else { sampling };
    match (carrier.get(TRACE_ID), carrier.get(SPAN_ID)) {
        (Some(trace), Some(span)) => {
            context(trace.trim(), span.trim(), sampling, debug, Format::B3Multi)
        }
        (None, None) if sampling != Sampling::Deferred => Extracted::DecisionOnly(sampling),
        (None, None) => Extracted::Absent,
        _ => Extracted::Invalid,
    }
}

pub fn inject_single(ctx: &SpanContext, carrier: &mut impl Setter) {
    let sampled = match (ctx.debug, ctx.sampling) {
        (true, _) => "-d",
        (false, Sampling::Sampled) => "-1",
        (false, Sampling::NotSampled) => "-0",
        (false, Sampling::Deferred) => "",
    };
    let mut value = String::with_capacity(68);
    hex::push(&mut value, &ctx.trace_id.0);
    value.push('-');
    hex::push(&mut value, &ctx.span_id.0);
    value.push_str(sampled);
    carrier.set(SINGLE_HEADER, &value);
}

pub fn inject_multi(ctx: &SpanContext, carrier: &mut impl Setter) {
    let (trace_id, span_id) = (ctx.trace_id.to_hex(), ctx.span_id.to_hex());
    carrier.set(TRACE_ID, hex::as_str(&trace_id));
    carrier.set(SPAN_ID, hex::as_str(&span_id));
    carrier.remove(PARENT_SPAN_ID);
    if ctx.debug {
        // Debug implies an accept decision; the spec says not to send both.
        carrier.set(FLAGS, "1");
        carrier.remove(SAMPLED);
        return;
    }
    carrier.remove(FLAGS);
    match ctx.sampling {
        Sampling::Sampled => carrier.set(SAMPLED, "1"),
        Sampling::NotSampled => carrier.set(SAMPLED, "0"),
        Sampling::Deferred => carrier.remove(SAMPLED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::Headers;

    const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const SPAN: &str = "e457b5a2e4d86bd1";

    fn single(value: &str) -> Extracted {
        extract_single(&Headers::from_pairs([("b3", value)]))
    }

    fn valid(extracted: Extracted) -> SpanContext {
        match extracted {
            Extracted::Valid(ctx) => ctx,
            other => panic!("expected a context, got {other:?}"),
        }
    }

    #[test]
    fn single_header_forms() {
        let cases: &[(&str, &str, Sampling, bool)] = &[
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
                TRACE,
                Sampling::Sampled,
                false,
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0",
                TRACE,
                Sampling::NotSampled,
                false,
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d",
                TRACE,
                Sampling::Sampled,
                true,
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1",
                TRACE,
                Sampling::Deferred,
                false,
            ),
            (
                "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
                "000000000000000064fe8b2a57d3eff7",
                Sampling::Sampled,
                false,
            ),
            (
                "80F198EE56343BA864FE8B2A57D3EFF7-E457B5A2E4D86BD1-1",
                TRACE,
                Sampling::Sampled,
                false,
            ),
        ];
        for (header, trace, sampling, debug) in cases {
            let ctx = valid(single(header));
            assert_eq!(ctx.trace_id.to_string(), *trace, "{header}");
            assert_eq!(ctx.span_id.to_string(), SPAN);
            assert_eq!((ctx.sampling, ctx.debug), (*sampling, *debug), "{header}");
            assert_eq!(ctx.origin, Format::B3);
        }
        assert_eq!(single("0"), Extracted::DecisionOnly(Sampling::NotSampled));
        assert_eq!(single("d"), Extracted::DecisionOnly(Sampling::Sampled));
        for bad in [
            "",
            "x",
            "80f198ee56343ba864fe8b2a57d3eff7",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-2",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-zz",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-x",
            "80f198ee56343ba864fe8b2a57d3ef-e457b5a2e4d86bd1-1",
            "00000000000000000000000000000000-e457b5a2e4d86bd1-1",
            "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1",
        ] {
            assert_eq!(single(bad), Extracted::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn multi_header_forms() {
        let multi =
            |pairs: &[(&str, &str)]| extract_multi(&Headers::from_pairs(pairs.iter().copied()));
        let ctx = valid(multi(&[
            ("X-B3-TraceId", TRACE),
            ("X-B3-SpanId", SPAN),
            ("X-B3-Sampled", "1"),
        ]));
        assert_eq!(
            (ctx.sampling, ctx.debug, ctx.origin),
            (Sampling::Sampled, false, Format::B3Multi)
        );
        let ctx = valid(multi(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-flags", "1"),
        ]));
        assert_eq!((ctx.sampling, ctx.debug), (Sampling::Sampled, true));
        let ctx = valid(multi(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "false"),
        ]));
        assert_eq!(ctx.sampling, Sampling::NotSampled);
        let ctx = valid(multi(&[
            ("x-b3-traceid", "64fe8b2a57d3eff7"),
            ("x-b3-spanid", SPAN),
        ]));
        assert_eq!(
            (ctx.trace_id.to_string().as_str(), ctx.sampling),
            ("000000000000000064fe8b2a57d3eff7", Sampling::Deferred)
        );
        assert_eq!(
            multi(&[("x-b3-sampled", "0")]),
            Extracted::DecisionOnly(Sampling::NotSampled)
        );
        assert_eq!(multi(&[]), Extracted::Absent);
        assert_eq!(multi(&[("x-b3-traceid", TRACE)]), Extracted::Invalid);
        assert_eq!(
            multi(&[
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", SPAN),
                ("x-b3-sampled", "yes")
            ]),
            Extracted::Invalid
        );
        assert_eq!(
            multi(&[
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", SPAN),
                ("x-b3-flags", "2")
            ]),
            Extracted::Invalid
        );
    }

    #[test]
    fn injection_never_propagates_the_callers_parent() {
        let mut ctx = SpanContext::new(
            TraceId::from_hex(TRACE, true).unwrap(),
            SpanId::from_hex(SPAN, true).unwrap(),
            Sampling::Sampled,
            Format::B3,
        );
        let mut headers = Headers::from_pairs([
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("x-b3-flags", "1"),
        ]);
        inject_multi(&ctx, &mut headers);
        inject_single(&ctx, &mut headers);
        assert_eq!(
            headers.get("b3"),
            Some("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
        );
        assert_eq!(headers.get("x-b3-sampled"), Some("1"));
        assert_eq!(headers.get("x-b3-parentspanid"), None);
        assert_eq!(headers.get("x-b3-flags"), None);
        ctx.debug = true;
        inject_multi(&ctx, &mut headers);
        inject_single(&ctx, &mut headers);
        assert_eq!(
            headers.get("b3"),
            Some("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d")
        );
        assert_eq!(
            (headers.get("x-b3-flags"), headers.get("x-b3-sampled")),
            (Some("1"), None)
        );
        ctx.debug = false;
        ctx.sampling = Sampling::Deferred;
        inject_multi(&ctx, &mut headers);
        inject_single(&ctx, &mut headers);
        assert_eq!(
            headers.get("b3"),
            Some("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1")
        );
        assert_eq!(headers.get("x-b3-sampled"), None);
    }
}
