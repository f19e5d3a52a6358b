//! Lowercase hexadecimal, written into caller-provided buffers so the hot path never allocates.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out`, which must be exactly twice as long.
pub fn encode_into(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (i, byte) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(byte >> 4) as usize];
        out[2 * i + 1] = DIGITS[(byte & 0x0f) as usize];
    }
}

/// Value of one hex digit. `lowercase_only` rejects `A`-`F`, as W3C Trace Context requires.
#[inline]
pub fn digit(c: u8, lowercase_only: bool) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' if !lowercase_only => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly `out.len() * 2` hex digits from `text` into `out`.
pub fn decode_into(text: &[u8], out: &mut [u8], lowercase_only: bool) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0], lowercase_only)? << 4) | digit(pair[1], lowercase_only)?;
    }
    Some(())
}

/// Decodes up to `N * 2` hex digits, left-padding shorter input with zeros
/// (B3 64-bit trace ids, Jaeger ids with leading zeros dropped).
pub fn decode_padded<const N: usize>(text: &[u8], lowercase_only: bool) -> Option<[u8; N]> {
    if text.is_empty() || text.len() > N * 2 {
        return None;
    }
    let mut digits = [b'0'; 64];
    let start = N * 2 - text.len();
    digits[start..N * 2].copy_from_slice(text);
    let mut out = [0u8; N];
    decode_into(&digits[..N * 2], &mut out, lowercase_only)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let mut out = [0u8; 4];
        let mut text = [0u8; 8];
        encode_into(&[0x00, 0xab, 0x10, 0xff], &mut text);
        assert_eq!(&text, b"00ab10ff");
        decode_into(&text, &mut out, true).unwrap();
        assert_eq!(out, [0x00, 0xab, 0x10, 0xff]);
        assert_eq!(decode_padded::<4>(b"1", true), Some([0, 0, 0, 1]));
        assert_eq!(decode_padded::<2>(b"12345", true), None);
        assert_eq!(decode_padded::<2>(b"", true), None);
        assert!(decode_into(b"AB", &mut [0u8; 1], true).is_none());
        assert!(decode_into(b"AB", &mut [0u8; 1], false).is_some());
        assert!(decode_into(b"zz", &mut [0u8; 1], false).is_none());
    }
}
