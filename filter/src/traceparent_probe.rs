//! The request path of W3C-only deployments that sample few requests: `traceparent` alone
//! settles what happens to a request that is not sampled, so the sidecar looks up that one
//! header instead of reading the request's whole header map, and reads the map only for the
//! requests it samples (their spans need it).
//!
//! Envoy charges ~2,400 instructions for a header the request lacks and ~10,500 for one it has,
//! against ~11,300 for the whole map plus the module's work of indexing it. The lookup wins for
//! every request it settles, and costs a sampled request one lookup more: a trade that pays
//! while few requests are sampled (`MAX_PERCENTAGE`).

use crate::config::Config;
use crate::context::{Format, Sampling, SpanContext};
use crate::ids::IdGenerator;
use crate::propagation::{composite, tracecontext, Getter};
use crate::tracer::{SpanStart, Tracer};

/// Above this sampling percentage the lookup made before every sampled request's map read costs
/// more than unsampled requests save (in Envoy instructions: a sampled request pays ~2,400
/// more, ~10,500 if it has context; an unsampled one that passes through saves ~5,200, a new
/// root ~6,100).
pub const MAX_PERCENTAGE: f64 = 25.0;

/// Whether `config` lets `traceparent` settle unsampled requests: W3C Trace Context (with or
/// without baggage) is the only format read and written, so no other header can carry context
/// or need translating, and no path is excluded, which would need `:path` to count requests.
pub fn applies(config: &Config) -> bool {
    composite::w3c_only(&config.extract, &config.inject)
        && config.exclude_paths.is_empty()
        && config.sampler.percentage() <= MAX_PERCENTAGE
}

/// Starts a request from its `traceparent` alone (`looked_up` holds that header, if the request
/// has it, and no other), for a tracer of a config that `applies`. An unsampled start is the
/// request's: its caller's context passes through (`Tracer::passes_through`), or a new trace
/// starts, whose `traceparent` replaces any other and takes any `tracestate` with it. `None`
/// when the request is sampled: its span needs the whole request, and as nothing was drawn from
/// `ids`, starting on the whole request mints the same ids and reaches the same decision. `None`
/// too when a new trace would take its id from `x-request-id`, which `looked_up` lacks.
pub fn settle(
    tracer: &Tracer,
    looked_up: &impl Getter,
    ids: &mut IdGenerator,
) -> Option<SpanStart> {
    if tracer.trace_ids_from_request_ids {
        return None;
    }
    let mut trial_ids = ids.clone();
    let start = tracer.start(looked_up, &mut trial_ids, || 0);
    if start.is_sampled() {
        return None;
    }
    *ids = trial_ids;
    Some(start)
}

/// The caller's context when the request's `traceparent` (its value, looked up alone) is one
/// the tracer passes through untouched: a valid value from a trusted caller that did not sample,
/// W3C the only format written. This is `settle`'s answer for the request a mesh's sidecars see
/// most, read off the value's bytes without building a start (building one was most of the
/// module's work for that request). `None` leaves the request to `settle`.
pub fn unsampled_caller(tracer: &Tracer, traceparent: &[u8]) -> Option<SpanContext> {
    if !tracer.trust_incoming || !tracer.propagator.is_w3c_only() {
        return None;
    }
    tracecontext::parse_traceparent(traceparent).filter(|caller| !caller.is_sampled())
}

/// The context `settle` starts for a request without `traceparent` when the new trace is not
/// sampled, its ids minted from `ids` as `Tracer::start` mints them (span id, then trace id)
/// with none of the extraction a request with headers needs: the request a sidecar sees most at
/// the edge of a mesh. Written with `tracecontext::inject`, as `Tracer::propagate` writes it.
/// `None`, with `ids` untouched, when the new trace is sampled (its span needs the whole
/// request) or the tracer's formats ask for more than a W3C root, or an id from `x-request-id`
/// (one lookup more would cost Envoy more than reading the whole request).
pub fn unsampled_root(tracer: &Tracer, ids: &mut IdGenerator) -> Option<SpanContext> {
    if !tracer.propagator.is_w3c_only()
        || tracer.xray_trace_ids
        || tracer.trace_ids_from_request_ids
    {
        return None;
    }
    let mut trial_ids = ids.clone();
    let span_id = trial_ids.span_id();
    let trace_id = trial_ids.trace_id(None);
    if tracer.sampler.decide(None, &trace_id, None) {
        return None;
    }
    *ids = trial_ids;
    let mut root = SpanContext::new(
        trace_id,
        span_id,
        Sampling::NotSampled,
        Format::TraceContext,
    );
    root.random = true;
    Some(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Format;
    use crate::propagation::composite::Propagator;
    use crate::propagation::Headers;
    use crate::sampling::Sampler;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER: &str = "00f067aa0ba902b7";

    fn tracer(percentage: f64, trust_incoming: bool) -> Tracer {
        let formats = [Format::TraceContext, Format::Baggage];
        Tracer {
            propagator: Propagator::new(&formats, &formats),
            sampler: Sampler::new(percentage).unwrap(),
            trust_incoming,
            write_threshold: true,
            xray_trace_ids: false,
            trace_ids_from_request_ids: false,
        }
    }

    fn traceparent(flags: &str) -> String {
        format!("00-{TRACE}-{CALLER}-{flags}")
    }

    #[derive(Debug, PartialEq)]
    enum Expected {
        NeedsRequest,
        PassThrough,
        Restart { invalid: u32 },
    }

    #[test]
    fn settles_what_traceparent_alone_decides() {
        let unsampled = traceparent("00");
        let sampled = traceparent("01");
        let cases: [(&str, f64, bool, Option<&str>, Expected); 8] = [
            (
                "no context, never sampled",
                0.0,
                true,
                None,
                Expected::Restart { invalid: 0 },
            ),
            (
                "no context, always sampled",
                100.0,
                true,
                None,
                Expected::NeedsRequest,
            ),
            (
                "unsampled caller",
                100.0,
                true,
                Some(&unsampled),
                Expected::PassThrough,
            ),
            (
                "sampled caller",
                0.0,
                true,
                Some(&sampled),
                Expected::NeedsRequest,
            ),
            (
                "malformed",
                0.0,
                true,
                Some("00-zz"),
                Expected::Restart { invalid: 1 },
            ),
            (
                "untrusted sampled caller",
                0.0,
                false,
                Some(&sampled),
                Expected::Restart { invalid: 0 },
            ),
            (
                "untrusted unsampled caller",
                0.0,
                false,
                Some(&unsampled),
                Expected::Restart { invalid: 0 },
            ),
            (
                "untrusted caller, always sampled",
                100.0,
                false,
                Some(&unsampled),
                Expected::NeedsRequest,
            ),
        ];
        for (name, percentage, trust, value, expected) in cases {
            let mut ids = IdGenerator::from_seed(7);
            let looked_up = Headers::from_pairs(value.map(|v| ("traceparent", v)));
            let tracer = tracer(percentage, trust);
            let settled = settle(&tracer, &looked_up, &mut ids);
            let got = match &settled {
                None => Expected::NeedsRequest,
                Some(start) if tracer.passes_through(start) => Expected::PassThrough,
                Some(start) => Expected::Restart {
                    invalid: start.incoming.invalid,
                },
            };
            assert_eq!(got, expected, "{name}");
            match (got, settled) {
                (_, None) => {}
                (Expected::PassThrough, Some(mut start)) => {
                    start.pass_through();
                    assert_eq!(start.context.trace_id.to_string(), TRACE, "{name}");
                    assert_eq!(start.context.span_id.to_string(), CALLER, "{name}");
                    assert!(!start.is_sampled() && start.parent.is_none(), "{name}");
                }
                (_, Some(start)) => {
                    assert_ne!(start.context.trace_id.to_string(), TRACE, "{name}");
                    assert!(!start.is_sampled() && start.parent.is_none(), "{name}");
                    assert!(start.context.trace_state.is_empty(), "{name}");
                    assert_eq!(start.link.is_some(), !trust, "{name}");
                }
            }
        }
    }

    /// `unsampled_caller` answers only where `settle` passes the caller through, and with the
    /// context `settle` leaves the stream with.
    #[test]
    fn the_unsampled_caller_shortcut_agrees_with_settle() {
        let values = [
            traceparent("00"),
            traceparent("02"),
            traceparent("01"),
            traceparent("03"),
            traceparent("0"),
            traceparent("000"),
            traceparent("0g"),
            format!("01-{TRACE}-{CALLER}-00-later-fields"),
            format!("01-{TRACE}-{CALLER}-00x"),
            format!("00-{TRACE}-{CALLER}-00-x"),
            format!("ff-{TRACE}-{CALLER}-00"),
            format!("00-{}-{CALLER}-00", "0".repeat(32)),
            format!("00-{TRACE}-{}-00", "0".repeat(16)),
            format!("00-{}-{CALLER}-00", TRACE.to_uppercase()),
            format!("00_{TRACE}-{CALLER}-00"),
            String::new(),
        ];
        let w3c_and_b3 = [Format::TraceContext, Format::B3Multi];
        for value in &values {
            for (percentage, trust, w3c_only) in [
                (0.0, true, true),
                (25.0, true, true),
                (100.0, true, true),
                (0.0, false, true),
                (0.0, true, false),
            ] {
                let mut tracer = tracer(percentage, trust);
                if !w3c_only {
                    tracer.propagator = Propagator::new(&w3c_and_b3, &w3c_and_b3);
                }
                let looked_up = Headers::from_pairs([("traceparent", value.as_str())]);
                let expected = settle(&tracer, &looked_up, &mut IdGenerator::from_seed(3))
                    .filter(|start| tracer.passes_through(start))
                    .map(|mut start| {
                        start.pass_through();
                        start.context
                    });
                let shortcut = unsampled_caller(&tracer, value.as_bytes());
                assert_eq!(
                    shortcut, expected,
                    "{value:?} at {percentage} %, trust {trust}, W3C only {w3c_only}"
                );
            }
        }
    }

    /// The headers a propagation writes and removes, in order.
    fn written_by(propagate: impl FnOnce(&mut Headers)) -> Vec<(String, String)> {
        let mut headers = Headers::from_pairs([("tracestate", "stray=1"), ("other", "kept")]);
        propagate(&mut headers);
        let mut pairs = Vec::new();
        headers.for_each(&mut |name, value| pairs.push((name.to_string(), value.to_string())));
        pairs
    }

    /// `unsampled_root` answers only where `settle` starts an unsampled trace for a request
    /// without context, with the same context and the same ids drawn.
    #[test]
    fn the_unsampled_root_shortcut_agrees_with_settle() {
        let w3c_and_b3 = [Format::TraceContext, Format::B3Multi];
        let mut answered = 0;
        for seed in 0..300 {
            for (percentage, trust, w3c_only, xray_ids, from_request_ids) in [
                (0.0, true, true, false, false),
                (1.0, true, true, false, false),
                (50.0, false, true, false, false),
                (100.0, true, true, false, false),
                (0.0, true, false, false, false),
                (0.0, true, true, true, false),
                (0.0, true, true, false, true),
            ] {
                let mut tracer = tracer(percentage, trust);
                tracer.xray_trace_ids = xray_ids;
                tracer.trace_ids_from_request_ids = from_request_ids;
                if !w3c_only {
                    tracer.propagator = Propagator::new(&w3c_and_b3, &w3c_and_b3);
                }
                let mut settled_ids = IdGenerator::from_seed(seed);
                let expected = settle(&tracer, &Headers::new(), &mut settled_ids)
                    .filter(|start| !tracer.passes_through(start))
                    .map(|mut start| {
                        let written = written_by(|writer| tracer.propagate(&mut start, writer));
                        (start.context, written)
                    });
                let mut ids = IdGenerator::from_seed(seed);
                let shortcut = unsampled_root(&tracer, &mut ids).map(|root| {
                    let written = written_by(|writer| tracecontext::inject(&root, writer));
                    (root, written)
                });
                let why = format!(
                    "seed {seed}, {percentage} %, W3C only {w3c_only}, X-Ray ids {xray_ids}, \
                     ids from request ids {from_request_ids}"
                );
                if w3c_only && !xray_ids && !from_request_ids {
                    assert_eq!(shortcut, expected, "{why}");
                } else {
                    assert_eq!(shortcut, None, "{why}");
                }
                // Drawn as `settle` draws them when it answers; untouched when it does not.
                let mut expected_ids = if shortcut.is_some() {
                    settled_ids
                } else {
                    IdGenerator::from_seed(seed)
                };
                assert_eq!(ids.span_id(), expected_ids.span_id(), "{why}");
                answered += shortcut.is_some() as u32;
            }
        }
        assert!(answered > 300, "only {answered} unsampled roots");
    }

    /// The decision made on the whole request must be the one the lookup would have made: a
    /// root's is a function of the trace id, so both must mint the same ids.
    #[test]
    fn the_whole_request_decides_as_the_lookup_did() {
        let tracer = tracer(25.0, true);
        let mut needed = 0;
        for seed in 0..400 {
            let mut ids = IdGenerator::from_seed(seed);
            let mut reference = IdGenerator::from_seed(seed);
            let whole = Headers::from_pairs([("baggage", "k=v"), ("tracestate", "a=1")]);
            let on_whole = tracer.start(&whole, &mut reference, || 0);
            match settle(&tracer, &Headers::new(), &mut ids) {
                None => {
                    needed += 1;
                    let again = tracer.start(&whole, &mut ids, || 0);
                    assert_eq!(again.context.trace_id, on_whole.context.trace_id);
                    assert!(again.is_sampled() && on_whole.is_sampled());
                }
                Some(start) => {
                    assert_eq!(start.context.trace_id, on_whole.context.trace_id);
                    assert!(!on_whole.is_sampled() && !tracer.passes_through(&start));
                }
            }
        }
        assert!(
            (60..140).contains(&needed),
            "{needed} of 400 sampled at 25 %"
        );
    }

    #[test]
    fn applies_only_to_w3c_configs_sampling_little_without_excluded_paths() {
        let base = crate::config::Config::from_json(
            br#"{"collector": {"cluster": "c"},
                "propagation": {"extract": ["tracecontext", "baggage"], "inject": ["tracecontext"]}}"#,
        )
        .unwrap();
        assert!(applies(&base));
        let mut b3_read = base.clone();
        b3_read.extract.push(Format::B3);
        let mut b3_written = base.clone();
        b3_written.inject.push(Format::B3Multi);
        let mut baggage_only = base.clone();
        baggage_only.extract = vec![Format::Baggage];
        let mut excluding = base.clone();
        excluding.exclude_paths.push("/healthz".into());
        let mut sampling_much = base.clone();
        sampling_much.sampler = Sampler::new(MAX_PERCENTAGE + 1.0).unwrap();
        for (name, config) in [
            ("b3 read", b3_read),
            ("b3 written", b3_written),
            ("baggage only", baggage_only),
            ("paths excluded", excluding),
            ("sampling much", sampling_much),
        ] {
            assert!(!applies(&config), "{name}");
        }
    }
}
