//! Trace and span ids from a fast PRNG (xoshiro256++) seeded once per VM from the host's
//! entropy: ids are minted on every request, so a syscall per id would be wasted work.

use crate::context::{SpanId, TraceId};

#[derive(Clone)]
pub struct IdGenerator {
    state: [u64; 4],
}

/// Spreads one seed over the state, as the xoshiro authors recommend.
fn splitmix64(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IdGenerator {
    pub fn from_seed(seed: u64) -> Self {
        let mut seed = seed;
        let state = [
            splitmix64(&mut seed),
            splitmix64(&mut seed),
            splitmix64(&mut seed),
            splitmix64(&mut seed),
        ];
        IdGenerator { state }
    }

    /// Seeds from `getrandom`; if the host has no entropy, from the clock and the stack address,
    /// which still differ between VMs. Never panics.
    pub fn from_entropy() -> Self {
        let mut bytes = [0u8; 8];
        let seed = match getrandom::getrandom(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                now ^ (&bytes as *const _ as u64).rotate_left(32)
            }
        };
        IdGenerator::from_seed(seed)
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn next_nonzero(&mut self) -> u64 {
        loop {
            let value = self.next_u64();
            if value != 0 {
                return value;
            }
        }
    }

    pub fn span_id(&mut self) -> SpanId {
        SpanId(self.next_nonzero().to_be_bytes())
    }

    /// With `xray_epoch_secs`, the first 4 bytes are the epoch seconds X-Ray requires; the rest is
    /// random either way, so the low 56 bits always carry the randomness sampling reads.
    pub fn trace_id(&mut self, xray_epoch_secs: Option<u32>) -> TraceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_nonzero().to_be_bytes());
        TraceId(id).stamped(xray_epoch_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_valid_and_distinct() {
        let mut ids = IdGenerator::from_seed(42);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let trace = ids.trace_id(None);
            let span = ids.span_id();
            assert!(trace.is_valid() && span.is_valid());
            assert!(seen.insert(trace));
        }
    }

    #[test]
    fn seeds_reproduce_and_entropy_differs() {
        assert_eq!(
            IdGenerator::from_seed(7).trace_id(None),
            IdGenerator::from_seed(7).trace_id(None)
        );
        assert_ne!(
            IdGenerator::from_entropy().trace_id(None),
            IdGenerator::from_entropy().trace_id(None)
        );
    }

    #[test]
    fn xray_ids_start_with_epoch_seconds() {
        let mut ids = IdGenerator::from_seed(1);
        let trace = ids.trace_id(Some(0x5759_e988));
        assert_eq!(&trace.0[..4], &[0x57, 0x59, 0xe9, 0x88]);
        assert!(trace.is_valid());
    }

    #[test]
    fn low_56_bits_are_uniform_enough_for_sampling() {
        let mut ids = IdGenerator::from_seed(9);
        let n = 100_000;
        let below_half = (0..n)
            .filter(|_| ids.trace_id(None).random_bits_56() < 1 << 55)
            .count();
        assert!((49_000..51_000).contains(&below_half), "{below_half}");
    }
}
