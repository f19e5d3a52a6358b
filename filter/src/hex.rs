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

/// Digits `encode_into` wrote, as text.
pub fn as_str(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).expect("hex digits are ASCII")
}

/// Appends `bytes` as lowercase hex. Header values are built with this rather than `format!`:
/// every request writes a few, and the formatting machinery does far more work per digit.
pub fn push(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

const NOT_HEX: u8 = 0xff;

/// Each byte's value as a hex digit, or `NOT_HEX`; `A`-`F` count only when `uppercase`.
const fn digit_values(uppercase: bool) -> [u8; 256] {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        let lower = DIGITS[i];
        table[lower as usize] = i as u8;
        if uppercase {
            table[lower.to_ascii_uppercase() as usize] = i as u8;
        }
        i += 1;
    }
    table
}

const LOWERCASE_VALUES: [u8; 256] = digit_values(false);
const ANY_CASE_VALUES: [u8; 256] = digit_values(true);

fn values(lowercase_only: bool) -> &'static [u8; 256] {
    if lowercase_only {
        &LOWERCASE_VALUES
    } else {
        &ANY_CASE_VALUES
    }
}

/// Value of one hex digit. `lowercase_only` rejects `A`-`F`, as W3C Trace Context requires.
pub fn digit(c: u8, lowercase_only: bool) -> Option<u8> {
    let value = values(lowercase_only)[usize::from(c)];
    (value != NOT_HEX).then_some(value)
}

/// Decodes exactly `out.len() * 2` hex digits from `text` into `out`.
pub fn decode_into(text: &[u8], out: &mut [u8], lowercase_only: bool) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    let values = values(lowercase_only);
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (values[usize::from(pair[0])], values[usize::from(pair[1])]);
        // A digit's value fits in four bits; `NOT_HEX` does not.
        if (high | low) > 0x0f {
            return None;
        }
        *byte = (high << 4) | low;
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
        // Both writers: into a buffer of digits, and appended to text.
        let encode = |bytes: &[u8]| -> String {
            let mut digits = vec![0; bytes.len() * 2];
            encode_into(bytes, &mut digits);
            let mut pushed = String::new();
            push(&mut pushed, bytes);
            assert_eq!(pushed, as_str(&digits));
            pushed
        };
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

    #[test]
    fn digit_values_match_the_standard_library_for_every_byte() {
        for c in 0..=255u8 {
            let any = char::from(c).to_digit(16).map(|value| value as u8);
            let lowercase = any.filter(|_| !c.is_ascii_uppercase());
            assert_eq!(digit(c, false), any, "{c}");
            assert_eq!(digit(c, true), lowercase, "{c}");
            for (high, expected) in [(b'0', Some(0u8)), (b'f', Some(0xf0)), (b'g', None)] {
                let mut out = [0u8; 1];
                let decoded = decode_into(&[high, c], &mut out, false).map(|_| out[0]);
                assert_eq!(decoded, expected.zip(any).map(|(h, l)| h | l), "{high} {c}");
                let mut out = [0u8; 1];
                let decoded = decode_into(&[c, high], &mut out, true).map(|_| out[0]);
                let expected_low = digit(high, true);
                assert_eq!(
                    decoded,
                    lowercase.zip(expected_low).map(|(h, l)| h << 4 | l)
                );
            }
        }
    }
}
