//! Which export failures are worth retrying, and how long to wait (OTLP exporter rules).

pub const CANCELLED: u32 = 1;
pub const DEADLINE_EXCEEDED: u32 = 4;
pub const RESOURCE_EXHAUSTED: u32 = 8;
pub const ABORTED: u32 = 10;
pub const OUT_OF_RANGE: u32 = 11;
pub const UNAVAILABLE: u32 = 14;
pub const DATA_LOSS: u32 = 15;

/// Transient codes are retried; RESOURCE_EXHAUSTED only when the server said when to come back.
pub fn is_retryable(grpc_status: u32, has_retry_info: bool) -> bool {
    match grpc_status {
        CANCELLED | DEADLINE_EXCEEDED | ABORTED | OUT_OF_RANGE | UNAVAILABLE | DATA_LOSS => true,
        RESOURCE_EXHAUSTED => has_retry_info,
        _ => false,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// Exponential backoff after `attempts` tries, capped, with "equal jitter": half the step is
    /// fixed, half random, so retries spread out yet never fire at once.
    pub fn backoff_ms(&self, attempts: u32, random: u64) -> u64 {
        let exponent = attempts.saturating_sub(1).min(20);
        let step = self
            .initial_backoff_ms
            .saturating_mul(1 << exponent)
            .min(self.max_backoff_ms)
            .max(1);
        let half = step / 2;
        half + random % (step - half + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes() {
        for code in 0..=16 {
            let expected = matches!(code, 1 | 4 | 10 | 11 | 14 | 15);
            assert_eq!(is_retryable(code, false), expected, "code {code}");
        }
        assert!(is_retryable(RESOURCE_EXHAUSTED, true));
        assert!(!is_retryable(3, true), "INVALID_ARGUMENT never");
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let policy = RetryPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            max_attempts: 5,
        };
        let cases = [
            (1, 50, 100),
            (2, 100, 200),
            (3, 200, 400),
            (4, 400, 800),
            (5, 500, 1000),
            (30, 500, 1000),
        ];
        for (attempts, low, high) in cases {
            let values: Vec<u64> = (0..500u64)
                .map(|r| policy.backoff_ms(attempts, r.wrapping_mul(0x9e37_79b9)))
                .collect();
            assert!(
                values.iter().all(|v| (low..=high).contains(v)),
                "attempt {attempts}"
            );
            assert!(values.iter().any(|v| *v != values[0]), "jitter varies");
        }
    }
}
