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
use crate::ids::IdGenerator;
use crate::propagation::{composite, Getter};
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
/// `ids`, starting on the whole request mints the same ids and reaches the same decision.
pub fn settle(
    tracer: &Tracer,
    looked_up: &impl Getter,
    ids: &mut IdGenerator,
) -> Option<SpanStart> {
    let mut trial_ids = ids.clone();
    let start = tracer.start(looked_up, &mut trial_ids, || 0);
    if start.is_sampled() {
        return None;
    }
    *ids = trial_ids;
    Some(start)
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
