//! Lowercase hexadecimal for ids in headers.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out`, which must be exactly twice as long.
pub fn encode_into(bytes: &[u8], out: &mut [u8]) {
    assert_eq!(out.len(), bytes.len() * 2);
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push(&mut out, bytes);
    out
}

/// Appends `bytes` as lowercase hex. Header values are built with this rather than `format!`:
/// every request writes a few, and the formatting machinery does far more work per digit.
pub fn push(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// Value of one hex digit. `lowercase_only` rejects `A`-`F`, as W3C Trace Context requires.
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
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (digit(pair[0], lowercase_only)? << 4) | digit(pair[1], lowercase_only)?;
    }
    Some(())
}

/// Decodes up to `N * 2` hex digits, left-padding shorter input with zeros
/// (B3 64-bit trace ids, Jaeger ids with leading zeros dropped).
pub fn decode_padded<const N: usize>(text: &[u8], lowercase_only: bool) -> Option<[u8; N]> {
    if text.is_empty() || text.len() > N * 2 {
        return None;
    }
    let mut digits = vec![b'0'; N * 2 - text.len()];
    digits.extend_from_slice(text);
    let mut out = [0u8; N];
    decode_into(&digits, &mut out, lowercase_only)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_byte_at_every_position() {
        let reference =
            |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
        for len in 0..=17usize {
            for first in (0..=255u8).step_by(7) {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| first.wrapping_add((i as u8).wrapping_mul(37)))
                    .collect();
                assert_eq!(encode(&bytes), reference(&bytes), "{bytes:?}");
            }
        }
        let every: Vec<u8> = (0..=255u8).collect();
        assert_eq!(encode(&every), reference(&every));
    }

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
        for c in 0..=255u8 {
            let pair = [b'0', c];
            assert_eq!(
                decode_into(&pair, &mut [0u8; 1], true).is_some(),
                digit(c, true).is_some(),
                "{c}"
            );
            assert_eq!(
                decode_into(&pair, &mut [0u8; 1], false).map(|_| ()),
                digit(c, false).map(|_| ()),
                "{c}"
            );
        }
    }
}
