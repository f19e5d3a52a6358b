//! Appending short byte strings without `memory.copy`. A copy whose length is known only at run
//! time compiles to wasm's `memory.copy`, which V8 runs as a call out of the compiled code: ~40
//! Envoy instructions each (measured by adding 24 to a sampled span: +1,350), where a span's
//! keys and values are mostly 3 to 30 bytes. Up to 32 bytes are copied here as two overlapping
//! loads and stores from either end, with no loop for the compiler to turn back into a copy.

/// The longest run copied without `memory.copy`.
pub const SHORT: usize = 32;

/// `out.extend_from_slice(bytes)`.
#[inline(always)]
pub fn extend_short(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len > SHORT {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(len);
    let at = out.len();
    // SAFETY: `reserve` made room for `len` bytes past `at`. Each branch reads a head and a tail
    // of equal width that lie within `bytes` (the width is at most `len`) and writes them to the
    // same offsets past `at`, covering all `len` bytes; reads and writes are unaligned.
    unsafe {
        let src = bytes.as_ptr();
        let dst = out.as_mut_ptr().add(at);
        if len >= 16 {
            let head = src.cast::<u128>().read_unaligned();
            let tail = src.add(len - 16).cast::<u128>().read_unaligned();
            dst.cast::<u128>().write_unaligned(head);
            dst.add(len - 16).cast::<u128>().write_unaligned(tail);
        } else if len >= 8 {
            let head = src.cast::<u64>().read_unaligned();
            let tail = src.add(len - 8).cast::<u64>().read_unaligned();
            dst.cast::<u64>().write_unaligned(head);
            dst.add(len - 8).cast::<u64>().write_unaligned(tail);
        } else if len >= 4 {
            let head = src.cast::<u32>().read_unaligned();
            let tail = src.add(len - 4).cast::<u32>().read_unaligned();
            dst.cast::<u32>().write_unaligned(head);
            dst.add(len - 4).cast::<u32>().write_unaligned(tail);
        } else if len > 0 {
            // 1 to 3 bytes: the first, the middle (the first again for 1) and the last.
            *dst = *src;
            *dst.add(len / 2) = *src.add(len / 2);
            *dst.add(len - 1) = *src.add(len - 1);
        }
        out.set_len(at + len);
    }
}

/// `out.push_str(text)`.
#[inline]
pub fn push_short(out: &mut String, text: &str) {
    // SAFETY: whole `str`s appended to a `String` leave it valid UTF-8.
    extend_short(unsafe { out.as_mut_vec() }, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_every_length_exactly() {
        let source: Vec<u8> = (0..=80u8)
            .map(|b| b.wrapping_mul(7).wrapping_add(1))
            .collect();
        for prefix_len in [0usize, 1, 3, 7, 15] {
            for len in 0..=source.len() {
                for offset in [0usize, 1] {
                    let bytes = &source[offset..(offset + len).min(source.len())];
                    let mut out: Vec<u8> = vec![0xee; prefix_len];
                    extend_short(&mut out, bytes);
                    let mut expected = vec![0xee; prefix_len];
                    expected.extend_from_slice(bytes);
                    assert_eq!(
                        out, expected,
                        "prefix {prefix_len}, len {len}, offset {offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn appends_whole_characters() {
        let cases = [
            "",
            "é",
            "/",
            "GET ",
            "{id}",
            "réservations",
            "/orders/{id}/items/{id}/é",
        ];
        let mut out = String::from("x");
        let mut expected = String::from("x");
        for text in cases {
            push_short(&mut out, text);
            expected.push_str(text);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn grows_a_full_buffer() {
        let mut out = Vec::with_capacity(4);
        out.extend_from_slice(b"abcd");
        extend_short(&mut out, b"0123456789abcdefghij");
        assert_eq!(out, b"abcd0123456789abcdefghij");
    }
}
