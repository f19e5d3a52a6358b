//! One hop's tracing decision: read the caller's context, decide sampling, and mint the context
//! of the span this sidecar records. Pure, so the whole decision is tested natively.

use crate::context::{Format, Sampling, SpanContext, SpanId, TraceId};
use crate::ids::IdGenerator;
use crate::propagation::composite::{Incoming, Propagator};
use crate::propagation::{tracestate, Getter, Rewriter};
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
    /// A new trace takes its request's `x-request-id` as trace id where it is one Envoy wrote
    /// (`TraceId::from_request_id`): the root decision is then the request id's too, which
    /// Envoy can match before the filter runs.
    pub trace_ids_from_request_ids: bool,
}

/// The header Envoy's HTTP connection manager gives every request.
pub const REQUEST_ID: &str = "x-request-id";

/// The outcome of `Tracer::start` for one request.
pub struct SpanStart {
    /// The new span's context: what gets injected for the next hop.
    pub context: SpanContext,
    /// The caller's span, when this span continues a trace.
    pub parent: Option<SpanId>,
    /// An untrusted external context, recorded as a link rather than a parent.
    pub link: Option<SpanContext>,
    pub incoming: Incoming,
}

impl SpanStart {
    pub fn is_sampled(&self) -> bool {
        self.context.is_sampled()
    }

    /// Makes this the start of a hop that passes its caller's context through: recording no
    /// span, it has the caller's context as its own, which is what the app sees as its parent.
    pub fn pass_through(&mut self) {
        if let Some(caller) = self.parent.take() {
            self.context.span_id = caller;
        }
    }
}

impl Tracer {
    pub fn start(
        &self,
        headers: &impl Getter,
        ids: &mut IdGenerator,
        // Asked only when a new X-Ray-style trace id needs the epoch: reading the clock is a
        // host call.
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
                let trace_id =
                    match self.request_id_trace_id(|| headers.get(REQUEST_ID).map(str::as_bytes)) {
                        // The randomness sampling reads is the request id's either way.
                        Some(id) => id.stamped(epoch_secs),
                        None => ids.trace_id(epoch_secs),
                    };
                let mut root =
                    SpanContext::new(trace_id, span_id, Sampling::Deferred, Format::TraceContext);
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

        SpanStart {
            parent: parent.map(|p| p.span_id),
            context,
            link,
            incoming,
        }
    }

    /// A new trace's id taken from its request's id, where so configured; `request_id` is
    /// asked only then (finding a header in the request is a search).
    fn request_id_trace_id<'a>(
        &self,
        request_id: impl FnOnce() -> Option<&'a [u8]>,
    ) -> Option<TraceId> {
        self.trace_ids_from_request_ids
            .then(request_id)
            .flatten()
            .and_then(TraceId::from_request_id)
    }

    /// Whether `start` can leave the request's trace headers as they came: not sampled, it
    /// continues a trusted caller whose context is already in the only format written, W3C's.
    /// Rewriting `traceparent` would only name a span that is never recorded as the app's parent,
    /// and costs Envoy ~4,400 instructions.
    pub fn passes_through(&self, start: &SpanStart) -> bool {
        !start.is_sampled() && start.parent.is_some() && self.propagator.is_w3c_only()
    }

    /// Whether an unsampled trusted caller's context is already written the way this hop would
    /// write it, in every format it writes: writing the caller's own context would set each
    /// header to the value it holds and remove none that is there. Then, as in
    /// `passes_through`, rewriting would only name a span never recorded. In a mesh whose
    /// sidecars write the same formats, and whose apps forward them all, that is every unsampled
    /// request, and each header left alone saves Envoy ~4,400 instructions.
    pub fn caller_context_already_written(
        &self,
        start: &mut SpanStart,
        headers: &mut impl Rewriter,
    ) -> bool {
        let Some(caller_span) = start.parent.filter(|_| !start.is_sampled()) else {
            return false;
        };
        if !self.propagator.may_leave_as_is(|name| headers.holds(name)) {
            return false;
        }
        // The caller's context is this one with the caller's span id.
        let own_span = std::mem::replace(&mut start.context.span_id, caller_span);
        let unchanged = headers.leaves_as_is(|writer| {
            self.propagator
                .inject(&start.context, &start.incoming, writer)
        });
        start.context.span_id = own_span;
        unchanged
    }

    /// Writes the new span's context for the next hop in every configured format, unless the
    /// caller's passes through, which makes `start` the caller's.
    pub fn propagate(&self, start: &mut SpanStart, headers: &mut impl Rewriter) {
        if self.passes_through(start) || self.caller_context_already_written(start, headers) {
            start.pass_through();
        } else {
            self.propagator
                .inject(&start.context, &start.incoming, headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::{Headers, Setter};

    fn tracer(percentage: f64, trust: bool) -> Tracer {
        let formats = [Format::TraceContext, Format::B3Multi, Format::XRay];
        Tracer {
            propagator: Propagator::new(&formats, &formats),
            sampler: Sampler::new(percentage).unwrap(),
            trust_incoming: trust,
            write_threshold: true,
            xray_trace_ids: false,
            trace_ids_from_request_ids: false,
        }
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// A root takes the request id as trace id, and the decision with it, only where so
    /// configured and only from a request id Envoy wrote; a caller's context is continued.
    #[test]
    fn a_root_takes_its_trace_id_from_the_request_id_where_configured() {
        let request_id = "2848a896-120d-48c5-9d4f-317eaf0bc7a6";
        let derived = "2848a896120d48c59d4f317eaf0bc7a6";
        // The id's randomness 0x4f317eaf0bc7a6 is 0.309 of 2^56: sampled at 70 %, not at 69 %.
        let uppercase = "2848A896-120D-48C5-9D4F-317EAF0BC7A6";
        // (case, configured, percentage, request id, caller's context, trace id (None: a
        // random one), sampled)
        type Case<'a> = (
            &'a str,
            bool,
            f64,
            Option<&'a str>,
            bool,
            Option<&'a str>,
            bool,
        );
        let cases: [Case; 6] = [
            (
                "root at 70 %",
                true,
                70.0,
                Some(request_id),
                false,
                Some(derived),
                true,
            ),
            (
                "root at 69 %",
                true,
                69.0,
                Some(request_id),
                false,
                Some(derived),
                false,
            ),
            (
                "not configured",
                false,
                0.0,
                Some(request_id),
                false,
                None,
                false,
            ),
            (
                "uppercase id",
                true,
                0.0,
                Some(uppercase),
                false,
                None,
                false,
            ),
            ("no request id", true, 0.0, None, false, None, false),
            (
                "a caller's context",
                true,
                0.0,
                Some(request_id),
                true,
                Some(PARENT_TRACE),
                true,
            ),
        ];
        for (case, configured, percentage, request_id, caller, trace_id, sampled) in cases {
            let mut tracer = tracer(percentage, true);
            tracer.trace_ids_from_request_ids = configured;
            let mut headers = Headers::new();
            if let Some(request_id) = request_id {
                headers.set(REQUEST_ID, request_id);
            }
            if caller {
                headers.set("traceparent", PARENT);
            }
            let start = tracer.start(&headers, &mut IdGenerator::from_seed(11), || 0);
            let started = start.context.trace_id.to_string();
            match trace_id {
                Some(expected) => assert_eq!(started, expected, "{case}"),
                None => assert_ne!(started, derived, "{case}"),
            }
            assert_eq!(start.is_sampled(), sampled, "{case}");
        }
        // Injecting X-Ray, the id begins with the epoch seconds; the rest, and the decision,
        // stay the request id's.
        let mut tracer = tracer(70.0, true);
        tracer.trace_ids_from_request_ids = true;
        tracer.xray_trace_ids = true;
        let mut headers = Headers::new();
        headers.set(REQUEST_ID, request_id);
        let start = tracer.start(&headers, &mut IdGenerator::from_seed(11), || 0x5759_e988);
        assert_eq!(
            start.context.trace_id.to_string(),
            "5759e988120d48c59d4f317eaf0bc7a6"
        );
        assert!(start.is_sampled());
    }

    #[test]
    fn continues_a_sampled_parent_even_at_zero_percent() {
        let headers = Headers::from_pairs([("traceparent", PARENT)]);
        let start = tracer(0.0, true).start(&headers, &mut IdGenerator::from_seed(1), || 0);
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
        let headers = Headers::from_pairs([("traceparent", &PARENT.replace("-01", "-00"))]);
        let start = tracer(100.0, true).start(&headers, &mut IdGenerator::from_seed(1), || 0);
        assert!(!start.is_sampled());
        assert!(start.parent.is_some());
    }

    #[test]
    fn a_root_decision_is_a_function_of_the_trace_id() {
        let tracer = tracer(50.0, true);
        for seed in 0..200 {
            let start = tracer.start(&Headers::new(), &mut IdGenerator::from_seed(seed), || 0);
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
        let headers =
            Headers::from_pairs([("x-b3-traceid", trace), ("x-b3-spanid", "e457b5a2e4d86bd1")]);
        let start = tracer(50.0, true).start(&headers, &mut IdGenerator::from_seed(3), || 0);
        assert_eq!(start.context.trace_id.to_string(), trace);
        let expected = TraceId::from_hex(trace, true).unwrap().random_bits_56() >= 1 << 55;
        assert_eq!(start.is_sampled(), expected);
    }

    #[test]
    fn sampling_only_header_is_respected() {
        let headers = Headers::from_pairs([("x-b3-sampled", "0")]);
        let start = tracer(100.0, true).start(&headers, &mut IdGenerator::from_seed(4), || 0);
        assert!(!start.is_sampled());
        assert!(start.parent.is_none());
    }

    #[test]
    fn untrusted_context_becomes_a_link_and_cannot_force_sampling() {
        let headers = Headers::from_pairs([("traceparent", PARENT)]);
        let start = tracer(0.0, false).start(&headers, &mut IdGenerator::from_seed(5), || 0);
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
        let mut start = tracer.start(&headers, &mut IdGenerator::from_seed(6), || 0);
        tracer.propagate(&mut start, &mut headers);
        let span = start.context.span_id.to_string();
        assert!(headers.get("traceparent").unwrap().contains(&span));
        assert_eq!(headers.get("x-b3-spanid"), Some(span.as_str()));
        assert!(headers
            .get("x-amzn-trace-id")
            .unwrap()
            .contains(&format!("Parent={span}")));
    }

    #[test]
    fn only_an_unsampled_trusted_w3c_caller_passes_through() {
        let w3c = [Format::TraceContext, Format::Baggage];
        let w3c_tracer = |percentage, trust| Tracer {
            propagator: Propagator::new(&w3c, &w3c),
            ..tracer(percentage, trust)
        };
        let unsampled = PARENT.replace("-01", "-00");
        // (case, tracer, traceparent, passes through)
        let cases: [(&str, Tracer, Option<&str>, bool); 6] = [
            (
                "unsampled caller",
                w3c_tracer(100.0, true),
                Some(&unsampled),
                true,
            ),
            ("sampled caller", w3c_tracer(0.0, true), Some(PARENT), false),
            ("no caller", w3c_tracer(0.0, true), None, false),
            (
                "untrusted caller",
                w3c_tracer(0.0, false),
                Some(&unsampled),
                false,
            ),
            (
                "b3 also written",
                tracer(100.0, true),
                Some(&unsampled),
                false,
            ),
            ("malformed", w3c_tracer(0.0, true), Some("00-bad"), false),
        ];
        for (why, tracer, traceparent, expected) in cases {
            let headers = Headers::from_pairs(traceparent.map(|v| ("traceparent", v)));
            let mut start = tracer.start(&headers, &mut IdGenerator::from_seed(8), || 0);
            assert_eq!(tracer.passes_through(&start), expected, "{why}");
            let mut written = Headers::new();
            tracer.propagate(&mut start, &mut written);
            assert_eq!(written.entries.is_empty(), expected, "{why}: {written:?}");
            if expected {
                assert_eq!(start.context.span_id.to_string(), "00f067aa0ba902b7");
                assert_eq!(
                    start.context.trace_id.to_string(),
                    "4bf92f3577b34da6a3ce929d0e0e4736"
                );
                assert!(start.parent.is_none() && !start.is_sampled());
            }
        }
    }

    /// A mesh's sidecars with the default formats write W3C and B3 and hand the next hop both:
    /// an unsampled caller's context then passes through whenever writing it again would change
    /// no header.
    #[test]
    fn an_unsampled_caller_already_written_in_every_format_passes_through() {
        use crate::config::{DEFAULT_EXTRACT, DEFAULT_INJECT};
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let caller = "00f067aa0ba902b7";
        let unsampled = format!("00-{trace}-{caller}-00");
        let as_written: Vec<(String, String)> = [
            ("traceparent", unsampled.as_str()),
            ("x-b3-traceid", trace),
            ("x-b3-spanid", caller),
            ("x-b3-sampled", "0"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let with = |extra: &[(&str, &str)]| {
            let mut pairs = as_written.clone();
            pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            pairs
        };
        // `value` empty: the header left out.
        let replaced = |name: &str, value: &str| {
            let mut pairs = as_written.clone();
            pairs.retain(|(k, _)| k != name);
            if !value.is_empty() {
                pairs.push((name.to_string(), value.to_string()));
            }
            pairs
        };
        let sampled = format!("00-{trace}-{caller}-01");
        let single_b3 = format!("{trace}-{caller}-0");
        // (case, trusted, headers, passes through)
        type Case<'a> = (&'a str, bool, Vec<(String, String)>, bool);
        let cases: Vec<Case> = vec![
            (
                "written as this hop writes it",
                true,
                as_written.clone(),
                true,
            ),
            (
                "with its tracestate and baggage",
                true,
                with(&[("tracestate", "vendor=1"), ("baggage", "tenant=a")]),
                true,
            ),
            ("untrusted", false, as_written.clone(), false),
            ("sampled", true, replaced("traceparent", &sampled), false),
            ("B3 missing", true, replaced("x-b3-spanid", ""), false),
            (
                "B3 naming another span",
                true,
                replaced("x-b3-spanid", "1111111111111111"),
                false,
            ),
            (
                "B3 leaving the decision to us",
                true,
                replaced("x-b3-sampled", ""),
                false,
            ),
            (
                "B3 parent span id, which this hop removes",
                true,
                with(&[("x-b3-parentspanid", "2222222222222222")]),
                false,
            ),
            (
                "an extract-only format's header",
                true,
                with(&[("b3", &single_b3)]),
                false,
            ),
            (
                "a tracestate this hop would write otherwise",
                true,
                with(&[("tracestate", "vendor=1 , other=2")]),
                false,
            ),
            (
                "Jaeger baggage this hop would write as baggage",
                true,
                with(&[("uberctx-tenant", "a")]),
                false,
            ),
            ("B3 twice", true, with(&[("x-b3-sampled", "0")]), false),
        ];
        for (why, trust, pairs, expected) in cases {
            let tracer = Tracer {
                propagator: Propagator::new(&DEFAULT_EXTRACT, &DEFAULT_INJECT),
                ..tracer(0.0, trust)
            };
            let mut headers = Headers::from_pairs(pairs);
            let before = headers.clone();
            let mut start = tracer.start(&headers, &mut IdGenerator::from_seed(9), || 0);
            let own_span = start.context.span_id;
            assert_eq!(
                tracer.caller_context_already_written(&mut start, &mut headers),
                expected,
                "{why}"
            );
            assert_eq!(headers, before, "{why}: asking writes nothing");
            assert_eq!(
                start.context.span_id, own_span,
                "{why}: and leaves the start as it was"
            );
            tracer.propagate(&mut start, &mut headers);
            if expected {
                assert_eq!(headers, before, "{why}: passed through untouched");
                assert_eq!(start.context.span_id.to_string(), caller, "{why}");
                assert!(start.parent.is_none() && !start.is_sampled(), "{why}");
            } else {
                assert_ne!(headers, before, "{why}: rewritten");
            }
        }
    }

    #[test]
    fn new_roots_carry_epoch_seconds_when_xray_is_injected() {
        let mut tracer = tracer(100.0, true);
        tracer.xray_trace_ids = true;
        let start = tracer.start(&Headers::new(), &mut IdGenerator::from_seed(7), || {
            0x6543_2100
        });
        assert_eq!(&start.context.trace_id.0[..4], &[0x65, 0x43, 0x21, 0x00]);
    }
}
