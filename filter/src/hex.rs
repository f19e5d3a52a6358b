//! Lowercase hexadecimal, written into caller-provided buffers so the hot path never allocates.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out`, which must be exactly twice as long. Four bytes
/// at a time as one 64-bit word of eight digits (every id of every request written passes
/// here: a `traceparent`'s 25 bytes in ~70 wasm instructions instead of ~300), the rest one by one.
pub fn encode_into(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), bytes.len() * 2);
    let mut words = out.chunks_exact_mut(8);
    let mut quads = bytes.chunks_exact(4);
    for (word, quad) in (&mut words).zip(&mut quads) {
        let digits = hex_word(u32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]));
        word.copy_from_slice(&digits.to_le_bytes());
    }
    let rest = words.into_remainder();
    for (pair, byte) in rest.chunks_exact_mut(2).zip(quads.remainder()) {
        pair[0] = DIGITS[(byte >> 4) as usize];
        pair[1] = DIGITS[(byte & 0x0f) as usize];
    }
}

/// The eight lowercase hex digits of four bytes (the first in the low bits), in the order they
/// are written (the first digit in the low byte).
fn hex_word(quad: u32) -> u64 {
    // Each byte into the low half of its own 16-bit lane.
    let mut lanes = u64::from(quad);
    lanes = (lanes | (lanes << 16)) & 0x0000_ffff_0000_ffff;
    lanes = (lanes | (lanes << 8)) & 0x00ff_00ff_00ff_00ff;
    // High nibble first, then low: one nibble per byte lane.
    let nibbles = ((lanes >> 4) & 0x000f_000f_000f_000f) | ((lanes & 0x000f_000f_000f_000f) << 8);
    // Lanes holding 10-15 gain 1 here (n + 6 reaches 16), and so skip from '9' + 1 to 'a'.
    let letters = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    nibbles + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64
}

/// A header value assembled on the stack from hex digits and whole strings. Its bytes are
/// always UTF-8 (hex digits are ASCII; a whole `&str` is UTF-8, and so is a concatenation of
/// them), so it reads back as a `&str` without `str::from_utf8`: ~275 wasm instructions saved
/// on the `traceparent` written for every request.
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    pub const fn new() -> Self {
        Text {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Appends `bytes` in lowercase hex. Panics past the capacity, like a slice would.
    pub fn hex(&mut self, bytes: &[u8]) -> &mut Self {
        let end = self.len + bytes.len() * 2;
        encode_into(bytes, &mut self.bytes[self.len..end]);
        self.len = end;
        self
    }

    /// Appends the whole of `text`. Panics past the capacity, like a slice would.
    pub fn text(&mut self, text: &str) -> &mut Self {
        let end = self.len + text.len();
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        self
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: `bytes[..len]` is hex digits and whole `&str`s, written only by `hex` and
        // `text`, so it is UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len]) }
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
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

/// Digit values by byte; `INVALID` marks a non-digit. Built at compile time.
const INVALID: u8 = 0xf0;

const fn digit_table(lowercase_only: bool) -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = match c as u8 {
            b'0'..=b'9' => c as u8 - b'0',
            b'a'..=b'f' => c as u8 - b'a' + 10,
            b'A'..=b'F' if !lowercase_only => c as u8 - b'A' + 10,
            _ => INVALID,
        };
        c += 1;
    }
    table
}

static LOWERCASE_DIGITS: [u8; 256] = digit_table(true);
static ANY_CASE_DIGITS: [u8; 256] = digit_table(false);

/// Decodes exactly `out.len() * 2` hex digits from `text` into `out`. Every id of every request
/// passes through here, so validity is checked once at the end instead of per digit; `out` holds
/// garbage when it returns `None`.
pub fn decode_into(text: &[u8], out: &mut [u8], lowercase_only: bool) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    let table = if lowercase_only {
        &LOWERCASE_DIGITS
    } else {
        &ANY_CASE_DIGITS
    };
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (table[usize::from(pair[0])], table[usize::from(pair[1])]);
        invalid |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    (invalid & INVALID == 0).then_some(())
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
    fn encodes_every_byte_at_every_position() {
        let reference =
            |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
        for len in 0..=17usize {
            for first in (0..=255u8).step_by(7) {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| first.wrapping_add((i as u8).wrapping_mul(37)))
                    .collect();
                let mut out = vec![0u8; len * 2];
                encode_into(&bytes, &mut out);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    reference(&bytes),
                    "{bytes:?}"
                );
            }
        }
        let every: Vec<u8> = (0..=255u8).collect();
        let mut out = vec![0u8; 512];
        encode_into(&every, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), reference(&every));
    }

    #[test]
    fn text_joins_hex_and_strings() {
        let mut text = Text::<12>::new();
        text.text("é-").hex(&[0x0a, 0xff]).text("-z");
        assert_eq!(text.as_str(), "é-0aff-z");
        assert_eq!(Text::<4>::default().as_str(), "");
    }

    #[test]
    #[should_panic]
    fn text_refuses_to_write_past_its_capacity() {
        Text::<3>::new().hex(&[1, 2]);
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
