//! Runs the configured formats in order: the first valid context wins, every injected format is
//! written from that one context, so a B3 caller and an X-Ray callee share one trace.

use super::baggage::{self, Baggage, BaggageEntry};
use super::{b3, jaeger, tracecontext, xray, Extracted, Getter, Setter};
use crate::context::{Format, Sampling, SpanContext};

#[derive(Clone, Debug)]
pub struct Propagator {
    extract: Vec<Format>,
    inject: Vec<Format>,
}

/// Everything read from one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Incoming {
    /// The first valid context, in extraction order.
    pub context: Option<SpanContext>,
    /// A decision without ids (`b3: 0`, `X-B3-Sampled` alone), when no context was found.
    pub decision: Option<Sampling>,
    /// Formats whose headers were present but malformed.
    pub invalid: u32,
    /// W3C baggage and/or Jaeger `uberctx-*` items, when those formats are extracted.
    pub baggage: Option<Baggage>,
    /// A W3C `baggage` header came in; it is forwarded as it is.
    pub baggage_header_present: bool,
    /// Jaeger `uberctx-*` items came in; they are forwarded as they are.
    uberctx_present: bool,
}

fn extract_format(format: Format, carrier: &impl Getter) -> Extracted {
    match format {
        Format::TraceContext => tracecontext::extract(carrier),
        Format::B3 => b3::extract_single(carrier),
        Format::B3Multi => b3::extract_multi(carrier),
        Format::Jaeger => jaeger::extract(carrier),
        Format::XRay => xray::extract(carrier),
        Format::Baggage => Extracted::Absent,
    }
}

fn headers_of(format: Format) -> &'static [&'static str] {
    match format {
        Format::TraceContext => &tracecontext::HEADERS,
        Format::B3 => &[b3::SINGLE_HEADER],
        Format::B3Multi => &b3::MULTI_HEADERS,
        Format::Jaeger => &[jaeger::HEADER],
        Format::XRay => &[xray::HEADER],
        Format::Baggage => &[baggage::HEADER],
    }
}

impl Propagator {
    pub fn new(extract: &[Format], inject: &[Format]) -> Self {
        Propagator {
            extract: extract.to_vec(),
            inject: inject.to_vec(),
        }
    }

    pub fn extracts(&self, format: Format) -> bool {
        self.extract.contains(&format)
    }

    pub fn injects(&self, format: Format) -> bool {
        self.inject.contains(&format)
    }

    pub fn extract(&self, carrier: &impl Getter) -> Incoming {
        let mut incoming = Incoming::default();
        for &format in &self.extract {
            match extract_format(format, carrier) {
                Extracted::Valid(ctx) => match incoming.context.as_mut() {
                    None => incoming.context = Some(ctx),
                    // Carry what only a losing format knows, when it names the same trace:
                    // X-Ray's extra fields, W3C tracestate.
                    Some(winner) if winner.trace_id == ctx.trace_id => {
                        if winner.xray_extra.is_empty() {
                            winner.xray_extra = ctx.xray_extra;
                        }
                        if winner.trace_state.is_empty() {
                            winner.trace_state = ctx.trace_state;
                        }
                    }
                    Some(_) => {}
                },
                Extracted::DecisionOnly(decision) => {
                    incoming.decision.get_or_insert(decision);
                }
                Extracted::Invalid => incoming.invalid += 1,
                Extracted::Absent => {}
            }
        }
        if incoming.context.is_some() {
            incoming.decision = None;
        }
        self.extract_baggage(carrier, &mut incoming);
        incoming
    }

    fn extract_baggage(&self, carrier: &impl Getter, incoming: &mut Incoming) {
        let mut entries = Vec::new();
        if self.extracts(Format::Baggage) {
            match baggage::parse(carrier) {
                Ok(Some(parsed)) => {
                    incoming.baggage_header_present = true;
                    entries = parsed.entries;
                }
                Ok(None) => {}
                Err(_) => {
                    incoming.baggage_header_present = true;
                    incoming.invalid += 1;
                }
            }
        }
        if self.extracts(Format::Jaeger) {
            for (key, value) in jaeger::extract_baggage(carrier) {
                incoming.uberctx_present = true;
                if entries.len() < baggage::MAX_ENTRIES && !entries.iter().any(|e| e.key == key) {
                    entries.push(BaggageEntry {
                        key,
                        value,
                        properties: String::new(),
                    });
                }
            }
        }
        if !entries.is_empty() {
            incoming.baggage = Some(Baggage { entries });
        }
    }

    pub fn inject(&self, ctx: &SpanContext, incoming: &Incoming, carrier: &mut impl Setter) {
        for &format in &self.inject {
            match format {
                Format::TraceContext => tracecontext::inject(ctx, carrier),
                Format::B3 => b3::inject_single(ctx, carrier),
                Format::B3Multi => b3::inject_multi(ctx, carrier),
                Format::Jaeger => jaeger::inject(ctx, carrier),
                Format::XRay => xray::inject(ctx, carrier),
                Format::Baggage => {}
            }
        }
        // A header we read but do not write would name our caller as the app's parent.
        for &format in &self.extract {
            if format != Format::Baggage && !self.injects(format) {
                for header in headers_of(format) {
                    carrier.remove(header);
                }
            }
        }
        let Some(baggage) = &incoming.baggage else {
            return;
        };
        if self.injects(Format::Baggage) && !incoming.baggage_header_present {
            carrier.set(baggage::HEADER, &baggage::serialize(baggage));
        }
        if self.injects(Format::Jaeger) && !incoming.uberctx_present {
            let items: Vec<(String, String)> = baggage
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            jaeger::inject_baggage(&items, carrier);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::SpanId;
    use crate::propagation::Headers;
    use Format::*;

    const TRACE: &str = "5759e988bd862e3fe1be46a994272793";
    const SPAN: &str = "53995c3f42cd8ad8";

    fn incoming_headers(format: Format) -> Headers {
        let pairs: Vec<(&str, String)> = match format {
            TraceContext => vec![
                ("traceparent", format!("00-{TRACE}-{SPAN}-01")),
                ("tracestate", "v=1".into()),
            ],
            B3 => vec![("b3", format!("{TRACE}-{SPAN}-1"))],
            B3Multi => vec![
                ("x-b3-traceid", TRACE.into()),
                ("x-b3-spanid", SPAN.into()),
                ("x-b3-sampled", "1".into()),
            ],
            Jaeger => vec![("uber-trace-id", format!("{TRACE}:{SPAN}:0:1"))],
            XRay => vec![(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
            )],
            Baggage => vec![],
        };
        Headers::from_pairs(pairs)
    }

    const CONTEXT_FORMATS: [Format; 5] = [TraceContext, B3, B3Multi, Jaeger, XRay];

    #[test]
    fn every_format_in_every_format_out() {
        for input in CONTEXT_FORMATS {
            for output in CONTEXT_FORMATS {
                let propagator = Propagator::new(&CONTEXT_FORMATS, &[output]);
                let mut headers = incoming_headers(input);
                let incoming = propagator.extract(&headers);
                let parent = incoming
                    .context
                    .clone()
                    .unwrap_or_else(|| panic!("{input:?} not extracted"));
                assert_eq!(parent.origin, input);
                let child = parent.child(
                    SpanId::from_hex("0102030405060708", true).unwrap(),
                    Sampling::Sampled,
                );
                propagator.inject(&child, &incoming, &mut headers);
                let reread = Propagator::new(&[output], &[])
                    .extract(&headers)
                    .context
                    .unwrap();
                assert_eq!(
                    reread.trace_id.to_string(),
                    TRACE,
                    "{input:?} -> {output:?}"
                );
                assert_eq!(
                    reread.span_id.to_string(),
                    "0102030405060708",
                    "{input:?} -> {output:?}"
                );
                assert!(reread.is_sampled());
                for other in CONTEXT_FORMATS.into_iter().filter(|f| *f != output) {
                    let stale = Propagator::new(&[other], &[]).extract(&headers);
                    assert!(
                        stale.context.is_none(),
                        "{input:?} -> {output:?}: stale {other:?} left behind"
                    );
                }
            }
        }
    }

    #[test]
    fn first_valid_wins_and_invalid_ones_are_counted() {
        let propagator = Propagator::new(&[TraceContext, B3, XRay], &[TraceContext]);
        let headers = Headers::from_pairs([
            ("traceparent", "garbage"),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            (
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            ),
        ]);
        let incoming = propagator.extract(&headers);
        assert_eq!(incoming.invalid, 1);
        let ctx = incoming.context.unwrap();
        assert_eq!(ctx.origin, B3);
        assert_eq!(ctx.trace_id.to_string(), "80f198ee56343ba864fe8b2a57d3eff7");
    }

    #[test]
    fn lineage_and_tracestate_ride_along_with_the_same_trace() {
        let propagator = Propagator::new(&[B3Multi, TraceContext, XRay], &[XRay, TraceContext]);
        let mut headers = incoming_headers(B3Multi);
        headers
            .entries
            .extend(incoming_headers(TraceContext).entries);
        headers.entries.push((
            "x-amzn-trace-id".into(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a:1".into(),
        ));
        let incoming = propagator.extract(&headers);
        let ctx = incoming.context.clone().unwrap();
        assert_eq!(ctx.origin, B3Multi);
        assert_eq!(ctx.xray_extra, "Lineage=a:1");
        assert_eq!(ctx.trace_state.as_str(), "v=1");
        propagator.inject(&ctx, &incoming, &mut headers);
        assert!(headers
            .get("x-amzn-trace-id")
            .unwrap()
            .ends_with(";Lineage=a:1"));
        assert_eq!(
            headers.get("x-b3-traceid"),
            None,
            "extracted but not injected: removed"
        );
    }

    #[test]
    fn decision_only_headers_and_absence() {
        let propagator = Propagator::new(&[TraceContext, B3], &[TraceContext]);
        let incoming = propagator.extract(&Headers::from_pairs([("b3", "0")]));
        assert_eq!(
            (incoming.context, incoming.decision),
            (None, Some(Sampling::NotSampled))
        );
        let incoming = propagator.extract(&Headers::new());
        assert_eq!(incoming, Incoming::default());
        let incoming = Propagator::new(&[B3], &[]).extract(&incoming_headers(TraceContext));
        assert!(
            incoming.context.is_none(),
            "formats not configured are not read"
        );
    }

    #[test]
    fn baggage_translates_between_w3c_and_jaeger() {
        let propagator = Propagator::new(
            &[TraceContext, Baggage, Jaeger],
            &[TraceContext, Baggage, Jaeger],
        );
        let mut headers = incoming_headers(TraceContext);
        headers
            .entries
            .push(("baggage".into(), "user=alice;p=1,tier=gold".into()));
        let incoming = propagator.extract(&headers);
        assert_eq!(
            incoming.baggage.as_ref().unwrap().get("user"),
            Some("alice")
        );
        let ctx = incoming.context.clone().unwrap();
        propagator.inject(&ctx, &incoming, &mut headers);
        assert_eq!(
            headers.get("baggage"),
            Some("user=alice;p=1,tier=gold"),
            "forwarded untouched"
        );
        assert_eq!(headers.get("uberctx-user"), Some("alice"));
        assert_eq!(headers.get("uberctx-tier"), Some("gold"));

        let mut headers = incoming_headers(Jaeger);
        headers.entries.push(("uberctx-user".into(), "bob".into()));
        let incoming = propagator.extract(&headers);
        propagator.inject(&incoming.context.clone().unwrap(), &incoming, &mut headers);
        assert_eq!(headers.get("baggage"), Some("user=bob"));
        assert_eq!(headers.get("uberctx-user"), Some("bob"));

        let incoming = propagator.extract(&Headers::from_pairs([("baggage", "not valid")]));
        assert_eq!(incoming.invalid, 1);
    }
}
