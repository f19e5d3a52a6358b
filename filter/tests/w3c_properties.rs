//! Property tests for the W3C parsers: arbitrary input never panics, whatever comes out is valid,
//! and what we write reads back the same.

use proptest::prelude::*;
use sidetrace::context::{Format, Sampling, SpanContext, SpanId, TraceId, TraceState};
use sidetrace::propagation::baggage::{self, Baggage, BaggageEntry};
use sidetrace::propagation::composite::Propagator;
use sidetrace::propagation::{tracecontext, tracestate, Extracted, Getter, Headers};

#[test]
fn traceparent_extract_and_inject_carry_the_context() {
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
    let mut headers = Headers::from_pairs([("traceparent", PARENT), ("tracestate", "")]);
    let Extracted::Valid(ctx) = tracecontext::extract(&headers) else {
        panic!("the traceparent is valid");
    };
    let child = ctx.child(SpanId([1, 2, 3, 4, 5, 6, 7, 8]), Sampling::Sampled);
    tracecontext::inject(&child, &mut headers);
    assert_eq!(
        headers.get("traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-03")
    );
    assert_eq!(headers.get("tracestate"), None);

    // Short and long tracestates alike come through whole.
    let short = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    let long = format!(
        "{short},{}",
        "vendor=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    );
    for state in [short, long.as_str()] {
        let headers = Headers::from_pairs([("traceparent", PARENT), ("tracestate", state)]);
        let Extracted::Valid(ctx) = tracecontext::extract(&headers) else {
            panic!("valid input");
        };
        assert_eq!(ctx.trace_state.as_str(), state);
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Strings shaped like a traceparent, so mutations land near the valid space.
fn traceparent_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<Vec<u8>>().prop_map(lossy),
        "[0-9a-fA-F]{2}-[0-9a-fA-F]{32}-[0-9a-fA-F]{16}-[0-9a-fA-F]{2}(-[ -~]{0,8})?",
        "[ \t]{0,2}[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}[ \t-]{0,2}",
        "(00|ff|01)-0{32}-[0-9a-f]{16}-0[0-3]",
    ]
}

fn member_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_*/-]{0,8}=[ -~]{0,10}",
        "[a-z0-9][a-z0-9_*/@-]{0,8}=[!-+--<>-~]{1,6}",
        "[ \t]{0,2}[a-zA-Z0-9@=]{0,12}[ \t]{0,2}",
        any::<String>(),
    ]
}

fn line_of_members() -> impl Strategy<Value = String> {
    prop::collection::vec(member_like(), 0..50).prop_map(|members| members.join(","))
}

/// Members the grammar accepts, with optional whitespace, empty members and repeated keys mixed
/// in, and now and then one that breaks the grammar.
fn mostly_valid_line() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        8 => "[ \t]{0,1}[a-z0-9][a-z0-9_*/@-]{0,6}=[!-+--<>-~]{1,5}[ \t]{0,1}",
        1 => Just(String::new()),
        1 => "[ -~]{0,6}",
    ];
    prop::collection::vec(member, 0..40).prop_map(|members| members.join(","))
}

/// What the grammar says of a whole list, written plainly: every non-empty member is
/// `key=value` with a valid key and value, and there are at most 32 of them.
fn list_parses(lines: &[String]) -> bool {
    let members: Vec<&str> = lines
        .iter()
        .flat_map(|line| line.split(','))
        .map(|member| member.trim_matches([' ', '\t']))
        .filter(|member| !member.is_empty())
        .collect();
    members.len() <= tracestate::MAX_MEMBERS
        && members.iter().all(|member| {
            member.split_once('=').is_some_and(|(key, value)| {
                tracestate::valid_key(key) && tracestate::valid_value(value)
            })
        })
}

fn headers_with(name: &'static str, lines: &[String]) -> Headers {
    Headers {
        entries: lines
            .iter()
            .map(|line| (name.to_string(), line.clone()))
            .collect(),
    }
}

fn assert_valid_tracestate(state: &TraceState) {
    if state.is_empty() {
        return;
    }
    let members: Vec<&str> = state.as_str().split(',').collect();
    assert!(members.len() <= tracestate::MAX_MEMBERS, "{state:?}");
    let mut keys = Vec::new();
    for member in &members {
        let (key, value) = member.split_once('=').expect("member has `=`");
        assert!(tracestate::valid_key(key), "{member:?}");
        assert!(tracestate::valid_value(value), "{member:?}");
        assert!(!keys.contains(&key), "duplicate {key:?} in {state:?}");
        keys.push(key);
    }
    // A valid serialization reads back unchanged.
    let reparsed = tracestate::parse(&headers_with("tracestate", &[state.as_str().to_string()]));
    assert_eq!(&reparsed, state);
}

fn span_context() -> impl Strategy<Value = SpanContext> {
    (
        any::<[u8; 16]>().prop_filter("non-zero", |id| *id != [0; 16]),
        any::<[u8; 8]>().prop_filter("non-zero", |id| *id != [0; 8]),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec("[a-z][a-z0-9]{0,6}=[!-+--<>-~]{1,8}", 0..5),
    )
        .prop_map(|(trace, span, sampled, random, members)| {
            let sampling = if sampled {
                Sampling::Sampled
            } else {
                Sampling::NotSampled
            };
            let mut ctx =
                SpanContext::new(TraceId(trace), SpanId(span), sampling, Format::TraceContext);
            ctx.random = random;
            let headers = headers_with("tracestate", &[members.join(",")]);
            ctx.trace_state = tracestate::parse(&headers);
            ctx
        })
}

fn baggage_entry() -> impl Strategy<Value = BaggageEntry> {
    (
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}",
        any::<String>(),
        prop_oneof![Just(String::new()), "(;[a-z]{1,5}(=[#-+]{0,4})?){1,3}",],
    )
        .prop_map(|(key, value, properties)| BaggageEntry {
            key,
            value,
            properties,
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn traceparent_never_panics_and_valid_means_valid(
        parent in traceparent_like(),
        states in prop::collection::vec(line_of_members(), 0..3),
    ) {
        let mut headers = headers_with("tracestate", &states);
        headers.entries.push(("traceparent".into(), parent.clone()));
        if let Extracted::Valid(ctx) = tracecontext::extract(&headers) {
            prop_assert!(ctx.is_valid());
            prop_assert!(ctx.sampling != Sampling::Deferred);
            prop_assert_eq!(ctx.origin, Format::TraceContext);
            assert_valid_tracestate(&ctx.trace_state);
            let trimmed = parent.trim_matches([' ', '\t']);
            prop_assert_eq!(&trimmed[3..35], ctx.trace_id.to_string());
            prop_assert_eq!(&trimmed[36..52], ctx.span_id.to_string());
            prop_assert!(!trimmed.starts_with("ff"));
        }
    }

    #[test]
    fn tracestate_output_is_always_valid(lines in prop::collection::vec(
        prop_oneof![line_of_members(), any::<Vec<u8>>().prop_map(lossy)], 0..4)
    ) {
        let state = tracestate::parse(&headers_with("tracestate", &lines));
        assert_valid_tracestate(&state);
    }

    #[test]
    fn tracestate_is_kept_whole_or_dropped_whole(
        lines in prop::collection::vec(mostly_valid_line(), 1..3),
    ) {
        let state = tracestate::parse(&headers_with("tracestate", &lines));
        assert_valid_tracestate(&state);
        let kept: Vec<&str> = if state.is_empty() {
            Vec::new()
        } else {
            state.as_str().split(',').collect()
        };
        if list_parses(&lines) {
            let mut expected: Vec<&str> = Vec::new();
            for member in lines.iter().flat_map(|line| line.split(',')) {
                let member = member.trim_matches([' ', '\t']);
                let key = member.split('=').next().unwrap_or_default();
                if !member.is_empty()
                    && !expected.iter().any(|kept| kept.split('=').next() == Some(key))
                {
                    expected.push(member);
                }
            }
            prop_assert_eq!(kept, expected);
        } else {
            prop_assert!(kept.is_empty(), "{:?} forwarded from {:?}", state, lines);
        }
    }

    #[test]
    fn tracestate_edits_stay_valid(
        line in line_of_members(),
        key in "[a-z][a-z0-9@]{0,6}",
        value in "[ -~]{0,8}",
        threshold in "[0-9a-fA-F]{0,15}",
    ) {
        let state = tracestate::parse(&headers_with("tracestate", &[line]));
        let upserted = tracestate::upsert(&state, &key, &value);
        assert_valid_tracestate(&upserted);
        if upserted != state {
            prop_assert_eq!(tracestate::get(&upserted, &key), Some(value.as_str()));
            let prefix = format!("{key}=");
            prop_assert!(upserted.as_str().starts_with(&prefix));
        }
        let with_threshold = tracestate::with_ot_threshold(&state, &threshold);
        assert_valid_tracestate(&with_threshold);
        if with_threshold != state {
            prop_assert_eq!(tracestate::ot_subkey(&with_threshold, "th"), Some(threshold.as_str()));
            prop_assert_eq!(
                tracestate::ot_subkey(&with_threshold, "rv"),
                tracestate::ot_subkey(&state, "rv")
            );
        }
    }

    #[test]
    fn tracecontext_round_trips(ctx in span_context()) {
        let mut headers = Headers::new();
        tracecontext::inject(&ctx, &mut headers);
        prop_assert_eq!(tracecontext::extract(&headers), Extracted::Valid(ctx));
    }

    #[test]
    fn baggage_never_panics_and_reserializes(lines in prop::collection::vec(
        prop_oneof![
            prop::collection::vec(
                prop_oneof![
                    "[ \t]{0,2}[A-Za-z0-9_.-]{1,6}[ \t]{0,2}=[ \t]{0,2}[!-~&&[^,;\"\\\\]]{0,8}(;[a-z]{1,3}(=[a-z%0-9]{0,3})?)?",
                    any::<String>(),
                ],
                0..80,
            ).prop_map(|members| members.join(",")),
            any::<Vec<u8>>().prop_map(lossy),
        ],
        0..3,
    )) {
        match baggage::parse(&headers_with(baggage::HEADER, &lines)) {
            Ok(Some(parsed)) => {
                prop_assert!(!parsed.entries.is_empty());
                prop_assert!(parsed.entries.len() <= baggage::MAX_ENTRIES);
                let text = baggage::serialize(&parsed);
                prop_assert!(text.len() <= baggage::MAX_BYTES);
                let again = baggage::parse(&headers_with(baggage::HEADER, &[text]));
                // Encoding may lengthen values, so only a prefix is guaranteed to fit again.
                let again = again.expect("serialized baggage is valid").expect("not empty");
                prop_assert!(parsed.entries.starts_with(&again.entries));
            }
            Ok(None) => {
                let blank = lines.iter().all(|line| {
                    line.split(',').all(|member| member.trim_matches([' ', '\t']).is_empty())
                });
                prop_assert!(blank);
            }
            Err(_) => {}
        }
    }

    #[test]
    fn baggage_round_trips(entries in prop::collection::vec(baggage_entry(), 1..10)) {
        let baggage = Baggage { entries };
        let text = baggage::serialize(&baggage);
        let parsed = baggage::parse(&headers_with(baggage::HEADER, &[text]));
        prop_assert_eq!(parsed, Ok(Some(baggage)));
    }

    #[test]
    fn composite_never_panics_and_reinjects_what_it_read(
        pairs in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid",
                    "x-b3-sampled", "x-b3-flags", "uber-trace-id", "uberctx-user",
                    "x-amzn-trace-id",
                ]),
                prop_oneof![traceparent_like(), line_of_members(), any::<String>()],
            ),
            0..8,
        ),
        span in any::<[u8; 8]>().prop_filter("non-zero", |id| *id != [0; 8]),
    ) {
        let carrier = Headers::from_pairs(pairs);
        let propagator = Propagator::new(&Format::ALL, &Format::ALL);
        let incoming = propagator.extract(&carrier);
        prop_assert!(incoming.invalid <= Format::ALL.len() as u32);
        if let Some(ctx) = &incoming.context {
            prop_assert!(ctx.is_valid());
            prop_assert!(incoming.decision.is_none());
            assert_valid_tracestate(&ctx.trace_state);
            let child = ctx.child(SpanId(span), ctx.sampling);
            let mut out = carrier.clone();
            propagator.inject(&child, &incoming, &mut out);
            let Extracted::Valid(written) = tracecontext::extract(&out) else {
                panic!("no traceparent written: {out:?}");
            };
            prop_assert_eq!(written.trace_id, ctx.trace_id);
            prop_assert_eq!(written.span_id, SpanId(span));
            prop_assert_eq!(written.is_sampled(), ctx.is_sampled());
            if let Some(baggage) = &incoming.baggage {
                prop_assert!(out.get(baggage::HEADER).is_some() || baggage.entries.is_empty());
            }
        }
    }
}
