//! Istio Telemetry API `randomSamplingPercentage` as OTel consistent probability sampling: a root
//! decision compares the trace id's 56 random bits with a threshold, so every sidecar that
//! decides for the same trace decides the same way.

use crate::context::{SpanContext, TraceId};

const RANDOMNESS_BITS: u32 = 56;
const HUNDREDTHS_OF_PERCENT: u64 = 10_000;

#[derive(Clone, Debug)]
pub struct Sampler {
    /// Rejection threshold T: sampled iff randomness >= T.
    threshold: u64,
    threshold_hex: Option<String>,
    hundredths: u64,
}

/// round((1 - p) * 2^56) for `rejected` = (1 - p) in hundredths of a percent.
fn rejection_threshold(rejected: u64) -> u64 {
    let scale = 1u128 << RANDOMNESS_BITS;
    let divisor = u128::from(HUNDREDTHS_OF_PERCENT);
    ((scale * u128::from(rejected) + divisor / 2) / divisor) as u64
}

impl Sampler {
    /// `percentage` from 0 to 100, kept to 0.01 % as Istio does.
    pub fn new(percentage: f64) -> Result<Sampler, &'static str> {
        if !percentage.is_finite() || !(0.0..=100.0).contains(&percentage) {
            return Err("must be between 0 and 100");
        }
        let hundredths = (percentage * 100.0).round() as u64;
        let rejected = HUNDREDTHS_OF_PERCENT - hundredths;
        let threshold = rejection_threshold(rejected);
        let threshold_hex = (hundredths > 0).then(|| {
            if threshold == 0 {
                return "0".to_string();
            }
            let hex = format!("{threshold:014x}");
            hex.trim_end_matches('0').to_string()
        });
        Ok(Sampler {
            threshold,
            threshold_hex,
            hundredths,
        })
    }

    pub fn percentage(&self) -> f64 {
        self.hundredths as f64 / 100.0
    }

    /// A parent's decision is always respected; otherwise the trace id (or an explicit `rv`) decides.
    pub fn decide(
        &self,
        parent: Option<&SpanContext>,
        trace_id: &TraceId,
        explicit_randomness: Option<u64>,
    ) -> bool {
        if let Some(parent) = parent {
            if parent.debug || parent.sampling == crate::context::Sampling::Sampled {
                return true;
            }
            if parent.sampling == crate::context::Sampling::NotSampled {
                return false;
            }
        }
        let randomness = explicit_randomness.unwrap_or_else(|| trace_id.random_bits_56());
        randomness >= self.threshold
    }

    /// The OTel `th` value for this probability; None at 0 %, which samples nothing.
    pub fn threshold_hex(&self) -> Option<&str> {
        self.threshold_hex.as_deref()
    }

    /// An incoming `ot=rv:` value: exactly 14 lowercase hex digits.
    pub fn parse_randomness(rv: &str) -> Option<u64> {
        let mut value = [0u8; 8];
        crate::hex::decode_into(rv.as_bytes(), &mut value[1..], true)?;
        Some(u64::from_be_bytes(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Format, Sampling, SpanId};
    use crate::ids::IdGenerator;

    #[test]
    fn thresholds_round_to_the_nearest() {
        let cases = [
            (0, 0x0),
            (1, 0x68db8bac711),
            (2, 0xd1b71758e22),
            (624, 0xff972474538ef),
            (625, 0x10000000000000),
            (626, 0x10068db8bac711),
            (1250, 0x20000000000000),
            (5000, 0x80000000000000),
            (7500, 0xc0000000000000),
            (8750, 0xe0000000000000),
            (9000, 0xe6666666666666),
            (9900, 0xfd70a3d70a3d71),
            (9999, 0xfff972474538ef),
            (10000, 0x100000000000000),
        ];
        for (rejected, threshold) in cases {
            assert_eq!(rejection_threshold(rejected), threshold, "{rejected}");
        }
    }

    fn trace_with_randomness(r: u64) -> TraceId {
        let mut id = [0xffu8; 16];
        id[9..].copy_from_slice(&r.to_be_bytes()[1..]);
        TraceId(id)
    }

    #[test]
    fn thresholds_match_the_otel_examples() {
        let cases: &[(f64, Option<&str>)] = &[
            (100.0, Some("0")),
            (50.0, Some("8")),
            (25.0, Some("c")),
            (12.5, Some("e")),
            (10.0, Some("e6666666666666")),
            (1.0, Some("fd70a3d70a3d71")),
            (0.01, Some("fff972474538ef")),
            (0.0, None),
        ];
        for (percentage, expected) in cases {
            assert_eq!(
                Sampler::new(*percentage).unwrap().threshold_hex(),
                *expected,
                "{percentage}"
            );
        }
    }

    #[test]
    fn rejects_out_of_range_percentages() {
        for bad in [-0.1, 100.01, f64::NAN, f64::INFINITY] {
            let error = Sampler::new(bad).unwrap_err();
            assert!(error.contains("between 0 and 100"), "{error}");
        }
        assert_eq!(Sampler::new(33.333).unwrap().percentage(), 33.33);
    }

    #[test]
    fn root_decisions_compare_randomness_with_the_threshold() {
        let half = Sampler::new(50.0).unwrap();
        assert!(!half.decide(None, &trace_with_randomness((1 << 55) - 1), None));
        assert!(half.decide(None, &trace_with_randomness(1 << 55), None));
        assert!(Sampler::new(100.0)
            .unwrap()
            .decide(None, &trace_with_randomness(0), None));
        assert!(!Sampler::new(0.0).unwrap().decide(
            None,
            &trace_with_randomness((1 << 56) - 1),
            None
        ));
        assert!(
            half.decide(None, &trace_with_randomness(0), Some(1 << 55)),
            "explicit rv wins"
        );
    }

    #[test]
    fn parent_decisions_are_respected() {
        let trace = trace_with_randomness(0);
        let parent = |sampling, debug| {
            let mut ctx = SpanContext::new(trace, SpanId([1; 8]), sampling, Format::B3);
            ctx.debug = debug;
            ctx
        };
        let never = Sampler::new(0.0).unwrap();
        let always = Sampler::new(100.0).unwrap();
        assert!(never.decide(Some(&parent(Sampling::Sampled, false)), &trace, None));
        assert!(never.decide(Some(&parent(Sampling::NotSampled, true)), &trace, None));
        assert!(!always.decide(Some(&parent(Sampling::NotSampled, false)), &trace, None));
        assert!(always.decide(Some(&parent(Sampling::Deferred, false)), &trace, None));
        assert!(!never.decide(Some(&parent(Sampling::Deferred, false)), &trace, None));
    }

    #[test]
    fn rates_hold_over_many_trace_ids() {
        let mut ids = IdGenerator::from_seed(2024);
        let traces: Vec<TraceId> = (0..200_000).map(|_| ids.trace_id(None)).collect();
        for (percentage, low, high) in [
            (1.0, 1_800, 2_200),
            (10.0, 19_400, 20_600),
            (50.0, 99_000, 101_000),
        ] {
            let sampler = Sampler::new(percentage).unwrap();
            let sampled = traces
                .iter()
                .filter(|t| sampler.decide(None, t, None))
                .count();
            assert!((low..=high).contains(&sampled), "{percentage}%: {sampled}");
        }
    }

    #[test]
    fn randomness_values_are_strict() {
        assert_eq!(
            Sampler::parse_randomness("0123456789abcd"),
            Some(0x0123456789abcd)
        );
        for bad in [
            "0123456789ABCD",
            "0123456789abc",
            "0123456789abcde",
            "0123456789abcg",
            "",
        ] {
            assert_eq!(Sampler::parse_randomness(bad), None, "{bad}");
        }
    }
}
