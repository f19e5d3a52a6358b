//! One hop's tracing decision, made once per request over a header carrier: read the caller's
//! context, decide sampling, mint the context of this hop's span, and write it for the next hop.
//! Pure, so the whole decision is tested natively against a plain header list.

use crate::context::{Format, Sampling, SpanContext, SpanId};
use crate::ids::IdGenerator;
use crate::propagation::composite::{Incoming, Propagator};
use crate::propagation::{tracestate, Getter, Setter};
use crate::sampling::Sampler;

/// How a sidecar treats incoming context.
pub struct Tracer {
    pub propagator: Propagator,
    pub sampler: Sampler,
    /// False at edge/ingress sidecars: outside callers cannot join our traces or force sampling;
    /// their context is kept as a span link instead.
    pub trust_incoming: bool,
    /// Write the OTel `ot=th:` tracestate entry when this hop makes a sampled root decision.
    pub write_threshold: bool,
    /// New trace ids start with epoch seconds when X-Ray is injected (X-Ray rejects others).
    pub xray_trace_ids: bool,
    /// An unsampled hop forwards its trusted caller's context unchanged. Off when unsampled
    /// spans may still be recorded (`recordUnsampled`): every hop then writes its own span id,
    /// so that the spans recorded along a failing path link up.
    pub forward_unsampled_callers: bool,
}

/// The outcome of `Tracer::start` for one request: what its stream remembers.
pub struct SpanStart {
    /// This hop's context, as written for the next hop. An unsampled hop that continues a
    /// trusted caller forwards the caller's context unchanged (`forward_unsampled_callers`):
    /// it records no span, so the app's parent stays the caller's.
    pub context: SpanContext,
    /// The caller's span, when this hop records a span that continues a trace.
    pub parent: Option<SpanId>,
    /// An untrusted external context, recorded as a link rather than a parent.
    pub link: Option<SpanContext>,
    pub incoming: Incoming,
}

impl SpanStart {
    pub fn is_sampled(&self) -> bool {
        self.context.is_sampled()
    }
}

impl Tracer {
    /// Extracts, decides, mints ids and injects: the request's headers are rewritten for the
    /// next hop through the same carrier they were read from.
    pub fn start(
        &self,
        headers: &mut (impl Getter + Setter),
        ids: &mut IdGenerator,
        // Asked only when a new X-Ray-style trace id needs the epoch: reading the clock is a
        // host call.
        now_unix_secs: impl FnOnce() -> u32,
    ) -> SpanStart {
        let start = self.decide(&*headers, ids, now_unix_secs);
        self.propagator
            .inject(&start.context, &start.incoming, headers);
        start
    }

    fn decide(
        &self,
        headers: &impl Getter,
        ids: &mut IdGenerator,
        now_unix_secs: impl FnOnce() -> u32,
    ) -> SpanStart {
        let incoming = self.propagator.extract(headers);
        let (parent, link, caller_decision) = match &incoming.context {
            Some(ctx) if self.trust_incoming => (Some(ctx), None, None),
            Some(ctx) => (None, Some(ctx.clone()), None),
            None if self.trust_incoming => (None, None, incoming.decision),
            None => (None, None, None),
        };

        let span_id = ids.span_id();
        let mut context = match parent {
            Some(parent) => parent.child(span_id, Sampling::Deferred),
            None => {
                let epoch_secs = self.xray_trace_ids.then(now_unix_secs);
                let mut root = SpanContext::new(
                    ids.trace_id(epoch_secs),
                    span_id,
                    Sampling::Deferred,
                    Format::TraceContext,
                );
                root.random = true;
                root
            }
        };

        let decided_here = match parent {
            Some(parent) => !parent.debug && parent.sampling == Sampling::Deferred,
            None => caller_decision.is_none_or(|decision| decision == Sampling::Deferred),
        };
        let sampled = if decided_here {
            let randomness = parent
                .and_then(|p| tracestate::ot_subkey(&p.trace_state, "rv"))
                .and_then(Sampler::parse_randomness);
            self.sampler.decide(parent, &context.trace_id, randomness)
        } else {
            parent.is_some_and(SpanContext::is_sampled)
                || caller_decision == Some(Sampling::Sampled)
        };
        context.sampling = if sampled {
            Sampling::Sampled
        } else {
            Sampling::NotSampled
        };

        if decided_here && sampled && self.write_threshold {
            if let Some(threshold) = self.sampler.threshold_hex() {
                context.trace_state =
                    tracestate::with_ot_threshold(&context.trace_state, threshold);
            }
        }
        // An unsampled hop forwards its trusted caller's context unchanged: nothing is recorded
        // here, so the next hop continues the caller's span, and this hop has no span whose
        // parent the caller would be.
        let forwarded = match parent {
            Some(caller) if !sampled && self.forward_unsampled_callers => {
                context.span_id = caller.span_id;
                true
            }
            _ => false,
        };

        SpanStart {
            parent: parent.filter(|_| !forwarded).map(|p| p.span_id),
            context,
            link,
            incoming,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TraceId;
    use crate::propagation::Headers;

    fn tracer(percentage: f64, trust: bool) -> Tracer {
        let formats = [Format::TraceContext, Format::B3Multi, Format::XRay];
        Tracer {
            propagator: Propagator::new(&formats, &formats),
            sampler: Sampler::new(percentage).unwrap(),
            trust_incoming: trust,
            write_threshold: true,
            xray_trace_ids: false,
            forward_unsampled_callers: true,
        }
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_sampled_parent_even_at_zero_percent() {
        let mut headers = Headers::from_pairs([("traceparent", PARENT)]);
        let start = tracer(0.0, true).start(&mut headers, &mut IdGenerator::from_seed(1), || 0);
        assert_eq!(
            start.context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(start.parent.unwrap().to_string(), "00f067aa0ba902b7");
        assert_ne!(start.context.span_id, start.parent.unwrap());
        assert!(start.is_sampled());
        assert!(start.link.is_none());
        assert!(
            start.context.trace_state.is_empty(),
            "no threshold for a parent decision"
        );
    }

    #[test]
    fn respects_an_unsampled_parent_at_full_percent() {
        let mut headers = Headers::from_pairs([("traceparent", &PARENT.replace("-01", "-00"))]);
        let start = tracer(100.0, true).start(&mut headers, &mut IdGenerator::from_seed(1), || 0);
        assert!(!start.is_sampled());
        assert_eq!(
            start.context.span_id.to_string(),
            "00f067aa0ba902b7",
            "the caller's context, forwarded"
        );
    }

    #[test]
    fn a_root_decision_is_a_function_of_the_trace_id() {
        let tracer = tracer(50.0, true);
        for seed in 0..200 {
            let start = tracer.start(&mut Headers::new(), &mut IdGenerator::from_seed(seed), || 0);
            let expected = start.context.trace_id.random_bits_56() >= 1 << 55;
            assert_eq!(start.is_sampled(), expected, "seed {seed}");
            assert!(start.context.random);
            if start.is_sampled() {
                assert_eq!(
                    tracestate::ot_subkey(&start.context.trace_state, "th"),
                    Some("8")
                );
            }
        }
    }

    #[test]
    fn deferred_b3_parent_is_decided_here_on_its_trace_id() {
        let trace = "80f198ee56343ba864fe8b2a57d3eff7";
        let mut headers =
            Headers::from_pairs([("x-b3-traceid", trace), ("x-b3-spanid", "e457b5a2e4d86bd1")]);
        let start = tracer(50.0, true).start(&mut headers, &mut IdGenerator::from_seed(3), || 0);
        assert_eq!(start.context.trace_id.to_string(), trace);
        let expected = TraceId::from_hex(trace, true).unwrap().random_bits_56() >= 1 << 55;
        assert_eq!(start.is_sampled(), expected);
    }

    #[test]
    fn sampling_only_header_is_respected() {
        let mut headers = Headers::from_pairs([("x-b3-sampled", "0")]);
        let start = tracer(100.0, true).start(&mut headers, &mut IdGenerator::from_seed(4), || 0);
        assert!(!start.is_sampled());
        assert!(start.parent.is_none());
    }

    #[test]
    fn untrusted_context_becomes_a_link_and_cannot_force_sampling() {
        let mut headers = Headers::from_pairs([("traceparent", PARENT)]);
        let start = tracer(0.0, false).start(&mut headers, &mut IdGenerator::from_seed(5), || 0);
        assert!(start.parent.is_none());
        assert_ne!(
            start.context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            start.link.as_ref().unwrap().span_id.to_string(),
            "00f067aa0ba902b7"
        );
        assert!(
            !start.is_sampled(),
            "0 % at the edge stays 0 % whatever the caller says"
        );
    }

    #[test]
    fn injection_rewrites_every_format_with_the_new_span() {
        let tracer = tracer(100.0, true);
        let mut headers = Headers::from_pairs([("traceparent", PARENT)]);
        let start = tracer.start(&mut headers, &mut IdGenerator::from_seed(6), || 0);
        let span = start.context.span_id.to_string();
        assert!(headers.get("traceparent").unwrap().contains(&span));
        assert_eq!(headers.get("x-b3-spanid"), Some(span.as_str()));
        assert!(headers
            .get("x-amzn-trace-id")
            .unwrap()
            .contains(&format!("Parent={span}")));
    }

    /// An unsampled hop records nothing, so the next hop sees its caller's span as parent, in
    /// every format written; the decision itself is the caller's.
    #[test]
    fn an_unsampled_trusted_caller_is_forwarded_unchanged() {
        use crate::config::{DEFAULT_EXTRACT, DEFAULT_INJECT};
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let caller = "00f067aa0ba902b7";
        let unsampled = format!("00-{trace}-{caller}-00");
        let default_formats = |percentage, trust| Tracer {
            propagator: Propagator::new(&DEFAULT_EXTRACT, &DEFAULT_INJECT),
            ..tracer(percentage, trust)
        };
        // (case, tracer, headers, forwarded as the caller's)
        type Case<'a> = (&'a str, Tracer, Vec<(&'a str, &'a str)>, bool);
        let cases: [Case; 6] = [
            (
                "unsampled W3C caller",
                default_formats(100.0, true),
                vec![("traceparent", &unsampled)],
                true,
            ),
            (
                "unsampled B3 caller",
                default_formats(100.0, true),
                vec![
                    ("x-b3-traceid", trace),
                    ("x-b3-spanid", caller),
                    ("x-b3-sampled", "0"),
                ],
                true,
            ),
            (
                "B3 caller leaving the decision to a 0 % hop",
                default_formats(0.0, true),
                vec![("x-b3-traceid", trace), ("x-b3-spanid", caller)],
                true,
            ),
            (
                "sampled caller",
                default_formats(0.0, true),
                vec![("traceparent", PARENT)],
                false,
            ),
            (
                "untrusted caller",
                default_formats(0.0, false),
                vec![("traceparent", &unsampled)],
                false,
            ),
            (
                "malformed",
                default_formats(0.0, true),
                vec![("traceparent", "00-bad")],
                false,
            ),
        ];
        for (why, tracer, pairs, forwarded) in cases {
            let mut headers = Headers::from_pairs(pairs);
            let start = tracer.start(&mut headers, &mut IdGenerator::from_seed(8), || 0);
            let written_span = headers.get("x-b3-spanid").map(str::to_string);
            assert_eq!(
                written_span.as_deref() == Some(caller),
                forwarded,
                "{why}: {headers:?}"
            );
            if forwarded {
                assert_eq!(start.context.span_id.to_string(), caller, "{why}");
                assert_eq!(start.context.trace_id.to_string(), trace, "{why}");
                assert_eq!(
                    headers.get("traceparent"),
                    Some(unsampled.as_str()),
                    "{why}"
                );
                assert!(start.parent.is_none() && !start.is_sampled(), "{why}");
            }
        }
    }

    /// Written again from the same decision, a forwarded context changes no header: a mesh's
    /// sidecars with the same formats leave each other's unsampled headers as they are.
    #[test]
    fn forwarding_an_already_written_context_is_idempotent() {
        use crate::config::{DEFAULT_EXTRACT, DEFAULT_INJECT};
        let tracer = Tracer {
            propagator: Propagator::new(&DEFAULT_EXTRACT, &DEFAULT_INJECT),
            ..tracer(0.0, true)
        };
        let mut headers = Headers::from_pairs([
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            ),
            ("tracestate", "vendor=1"),
            ("baggage", "tenant=a"),
        ]);
        tracer.start(&mut headers, &mut IdGenerator::from_seed(9), || 0);
        let once = headers.clone();
        tracer.start(&mut headers, &mut IdGenerator::from_seed(10), || 0);
        let (mut a, mut b) = (once.entries.clone(), headers.entries.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    /// Recording unsampled spans needs every hop's own span id on the wire, or the spans
    /// recorded along a failing path would not link; the decision stays the caller's.
    #[test]
    fn without_forwarding_an_unsampled_hop_writes_its_own_span() {
        let tracer = Tracer {
            forward_unsampled_callers: false,
            ..tracer(100.0, true)
        };
        let unsampled = PARENT.replace("-01", "-00");
        let mut headers = Headers::from_pairs([("traceparent", unsampled.as_str())]);
        let start = tracer.start(&mut headers, &mut IdGenerator::from_seed(12), || 0);
        assert!(!start.is_sampled());
        assert_eq!(start.parent.unwrap().to_string(), "00f067aa0ba902b7");
        let own = start.context.span_id.to_string();
        assert_ne!(own, "00f067aa0ba902b7");
        let written = headers.get("traceparent").unwrap();
        assert!(
            written.contains(&own) && written.ends_with("-00"),
            "{written}"
        );
    }

    #[test]
    fn new_roots_carry_epoch_seconds_when_xray_is_injected() {
        let mut tracer = tracer(100.0, true);
        tracer.xray_trace_ids = true;
        let start = tracer.start(&mut Headers::new(), &mut IdGenerator::from_seed(7), || {
            0x6543_2100
        });
        assert_eq!(&start.context.trace_id.0[..4], &[0x65, 0x43, 0x21, 0x00]);
    }
}
