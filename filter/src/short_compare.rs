//! Comparing short byte strings without calling `memcmp`. Header names are compared on every
//! lookup of a request's header map (a caller's context takes three scans of eight or nine
//! pairs), and a slice comparison compiles to a call of the module's `memcmp`, a byte loop: ~1,000
//! wasm instructions a sampled caller's request. Up to 32 bytes are compared here as two
//! overlapping loads from either end, as `short_copy` copies them.

use crate::short_copy::SHORT;

/// `a == b`. Not inlined: the length check at each caller rules out most pairs, and the module
/// stays within its size.
#[inline(never)]
pub fn equal_short(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len > SHORT {
        return a == b;
    }
    // SAFETY: each branch reads a head and a tail of equal width that lie within both slices
    // (the width is at most `len`, which both have); reads are unaligned.
    unsafe {
        let (a, b) = (a.as_ptr(), b.as_ptr());
        if len >= 16 {
            let head = a.cast::<u128>().read_unaligned() ^ b.cast::<u128>().read_unaligned();
            let tail = a.add(len - 16).cast::<u128>().read_unaligned()
                ^ b.add(len - 16).cast::<u128>().read_unaligned();
            head | tail == 0
        } else if len >= 8 {
            let head = a.cast::<u64>().read_unaligned() ^ b.cast::<u64>().read_unaligned();
            let tail = a.add(len - 8).cast::<u64>().read_unaligned()
                ^ b.add(len - 8).cast::<u64>().read_unaligned();
            head | tail == 0
        } else if len >= 4 {
            let head = a.cast::<u32>().read_unaligned() ^ b.cast::<u32>().read_unaligned();
            let tail = a.add(len - 4).cast::<u32>().read_unaligned()
                ^ b.add(len - 4).cast::<u32>().read_unaligned();
            head | tail == 0
        } else if len > 0 {
            // 1 to 3 bytes: the first, the middle (the first again for 1) and the last.
            *a == *b && *a.add(len / 2) == *b.add(len / 2) && *a.add(len - 1) == *b.add(len - 1)
        } else {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_slice_equality_at_every_length_and_difference() {
        let source: Vec<u8> = (0..=80u8)
            .map(|b| b.wrapping_mul(7).wrapping_add(1))
            .collect();
        for len in 0..=source.len() {
            for offset in [0usize, 1] {
                let a = &source[offset..(offset + len).min(source.len())];
                let same = a.to_vec();
                assert!(equal_short(a, &same), "len {len}, offset {offset}");
                // One byte different, at every position: each must be seen.
                for at in 0..a.len() {
                    let mut other = a.to_vec();
                    other[at] ^= 0x20;
                    assert!(!equal_short(a, &other), "len {len}, byte {at}");
                }
                if !a.is_empty() {
                    assert!(!equal_short(a, &a[1..]), "len {len}: shorter");
                    assert!(!equal_short(&a[1..], a), "len {len}: longer");
                }
            }
        }
        assert!(equal_short(b"", b""));
    }
}
