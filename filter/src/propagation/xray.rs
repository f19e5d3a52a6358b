//! AWS X-Ray `X-Amzn-Trace-Id`: `Root=1-<8 hex epoch>-<24 hex>;Parent=<16 hex>;Sampled=0|1|?`,
//! with any other fields (such as `Lineage`) carried through untouched.

use super::{Extracted, Getter, Setter};
use crate::context::{Format, Sampling, SpanContext, SpanId, TraceId};
use crate::hex;

pub const HEADER: &str = "x-amzn-trace-id";
pub const MAX_LENGTH: usize = 256;

/// `1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx` → the 128-bit id (epoch seconds, then 96 random bits).
fn root(text: &str) -> Option<TraceId> {
    let bytes = text.as_bytes();
    if bytes.len() != 35 || !text.starts_with("1-") || bytes[10] != b'-' {
        return None;
    }
    let mut id = [0u8; 16];
    hex::decode_into(&bytes[2..10], &mut id[..4], false)?;
    hex::decode_into(&bytes[11..35], &mut id[4..], false)?;
    Some(TraceId(id)).filter(TraceId::is_valid)
}

fn valid_extra_field(key: &str, value: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(crate::propagation::baggage::is_token_char)
        && value
            .bytes()
            .all(|c| (0x21..=0x7e).contains(&c) && c != b';')
}

pub fn extract(carrier: &impl Getter) -> Extracted {
    let Some(value) = carrier.get(HEADER) else {
        return Extracted::Absent;
    };
    if value.len() > MAX_LENGTH {
        return Extracted::Invalid;
    }
    let (mut trace_id, mut span_id, mut sampling) = (None, None, Sampling::Deferred);
    let mut extra = String::new();
    for field in value.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let Some((key, val)) = field.split_once('=') else {
            return Extracted::Invalid;
        };
        let (key, val) = (key.trim(), val.trim());
        match key {
            "Root" => trace_id = root(val),
            "Parent" => span_id = SpanId::from_hex(val, false),
            "Sampled" => {
                sampling = match val {
                    "1" => Sampling::Sampled,
                    "0" => Sampling::NotSampled,
                    "?" => Sampling::Deferred,
                    _ => return Extracted::Invalid,
                }
            }
            // The caller's own segment; ours replaces it.
            "Self" => {}
            _ => {
                // Carried fields are written back verbatim, so only clean ones are accepted.
                if !valid_extra_field(key, val) {
                    return Extracted::Invalid;
                }
                if !extra.is_empty() {
                    extra.push(';');
                }
                extra.push_str(key);
                extra.push('=');
                extra.push_str(val);
            }
        }
    }
    match (trace_id, span_id) {
        (Some(trace_id), Some(span_id)) => {
            let mut ctx = SpanContext::new(trace_id, span_id, sampling, Format::XRay);
            ctx.xray_extra = extra;
            Extracted::Valid(ctx)
        }
        _ => Extracted::Invalid,
    }
}

pub fn inject(ctx: &SpanContext, carrier: &mut impl Setter) {
    let sampled = match (ctx.is_sampled(), ctx.sampling) {
        (true, _) => ";Sampled=1",
        (false, Sampling::NotSampled) => ";Sampled=0",
        (false, _) => ";Sampled=?",
    };
    let mut value = String::with_capacity(80);
    value.push_str("Root=1-");
    hex::push(&mut value, &ctx.trace_id.0[..4]);
    value.push('-');
    hex::push(&mut value, &ctx.trace_id.0[4..]);
    value.push_str(";Parent=");
    hex::push(&mut value, &ctx.span_id.0);
    value.push_str(sampled);
    if !ctx.xray_extra.is_empty() {
        value.push(';');
        value.push_str(&ctx.xray_extra);
    }
    carrier.set(HEADER, &value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::Headers;

    fn extract_one(value: &str) -> Extracted {
        extract(&Headers::from_pairs([("X-Amzn-Trace-Id", value)]))
    }

    #[test]
    fn reads_the_documented_forms() {
        let cases: &[(&str, Sampling, &str)] = &[
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", Sampling::Sampled, ""),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", Sampling::NotSampled, ""),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?", Sampling::Deferred, ""),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", Sampling::Deferred, ""),
            ("Sampled=1;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793", Sampling::Sampled, ""),
            (" Root = 1-5759e988-bd862e3fe1be46a994272793 ; Parent=53995c3f42cd8ad8 ;Sampled=1;", Sampling::Sampled, ""),
            (
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1|68fd508a:5;Foo=bar",
                Sampling::Sampled,
                "Lineage=a87bd80c:1|68fd508a:5;Foo=bar",
            ),
            ("Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", Sampling::Deferred, ""),
        ];
        for (header, sampling, extra) in cases {
            match extract_one(header) {
                Extracted::Valid(ctx) => {
                    assert_eq!(
                        ctx.trace_id.to_string(),
                        "5759e988bd862e3fe1be46a994272793",
                        "{header}"
                    );
                    assert_eq!(ctx.span_id.to_string(), "53995c3f42cd8ad8");
                    assert_eq!(ctx.sampling, *sampling, "{header}");
                    assert_eq!(ctx.xray_extra, *extra);
                    assert_eq!(ctx.origin, Format::XRay);
                }
                other => panic!("{header}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_malformed_headers() {
        let too_long = format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Pad={}",
            "x".repeat(200)
        );
        for bad in [
            "",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "Parent=53995c3f42cd8ad8",
            "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e98-bd862e3fe1be46a9942727931;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=2",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;junk",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Lineage=a\u{7f}b",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Bad Key=1",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Lineage=caf\u{e9}",
            "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",
            too_long.as_str(),
        ] {
            assert_eq!(extract_one(bad), Extracted::Invalid, "{bad:?}");
        }
        assert_eq!(extract(&Headers::new()), Extracted::Absent);
    }

    #[test]
    fn reinjection_keeps_extra_fields() {
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?;Lineage=a87bd80c:1";
        let Extracted::Valid(mut ctx) = extract_one(header) else {
            panic!()
        };
        ctx.span_id = SpanId::from_hex("0102030405060708", true).unwrap();
        let mut headers = Headers::new();
        inject(&ctx, &mut headers);
        assert_eq!(
            headers.get(HEADER),
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0102030405060708;Sampled=?;Lineage=a87bd80c:1")
        );
        ctx.sampling = Sampling::Sampled;
        ctx.xray_extra.clear();
        inject(&ctx, &mut headers);
        assert_eq!(
            headers.get(HEADER),
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0102030405060708;Sampled=1")
        );
    }
}
