//! Protobuf wire format by hand: the span encoder writes straight into the output buffer with
//! no intermediate message structs, and the few collector answers worth reading are walked
//! field by field without a generated decoder.

pub const VARINT: u32 = 0;
pub const FIXED64: u32 = 1;
pub const LENGTH_DELIMITED: u32 = 2;
pub const FIXED32: u32 = 5;

pub fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, ((field << 3) | wire_type) as u64);
}

/// The tag of a field numbered below 16, which is one byte.
pub const fn short_tag(field: u32, wire_type: u32) -> u8 {
    assert!(field < 16);
    ((field << 3) | wire_type) as u8
}

pub fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, LENGTH_DELIMITED);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// proto3 omits empty strings.
pub fn put_str(out: &mut Vec<u8>, field: u32, text: &str) {
    if !text.is_empty() {
        put_bytes(out, field, text.as_bytes());
    }
}

pub fn put_uint(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        put_tag(out, field, VARINT);
        put_varint(out, value);
    }
}

pub fn put_fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        put_tag(out, field, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

pub fn put_fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        put_tag(out, field, FIXED32);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Writes a nested message whose body `write` produces. The body's length is only known once it
/// is written: one byte is kept for it, enough for most nested messages (attributes), and a
/// longer body is moved up to make room for a wider length.
pub fn put_message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    put_tag(out, field, LENGTH_DELIMITED);
    let slot = out.len();
    out.push(0);
    write(out);
    let body_len = out.len() - slot - 1;
    if body_len < 0x80 {
        out[slot] = body_len as u8;
        return;
    }
    let width = varint_len(body_len as u64);
    let body_end = out.len();
    out.resize(body_end + width - 1, 0);
    out.copy_within(slot + 1..body_end, slot + width);
    let mut rest = body_len;
    for byte in &mut out[slot..slot + width] {
        *byte = (rest as u8 & 0x7f) | 0x80;
        rest >>= 7;
    }
    out[slot + width - 1] &= 0x7f;
}

/// One field's value as read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Walks the fields of one message. A truncated or malformed message ends the walk with an
/// error; groups (wire types 3 and 4, unused by every message read here) count as malformed.
pub struct FieldReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> FieldReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        FieldReader { bytes, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err("truncated varint");
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err("varint overflows 64 bits");
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("varint overflows 64 bits")
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("truncated field")?;
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    /// The next field number and value, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Option<Result<(u32, FieldValue<'a>), &'static str>> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<(u32, FieldValue<'a>), &'static str> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        if field == 0 {
            return Err("field number 0");
        }
        let value = match (key & 7) as u32 {
            VARINT => FieldValue::Varint(self.varint()?),
            FIXED64 => {
                let bytes = self.take(8)?;
                FieldValue::Fixed64(u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])))
            }
            LENGTH_DELIMITED => {
                let len = usize::try_from(self.varint()?).map_err(|_| "truncated field")?;
                FieldValue::Bytes(self.take(len)?)
            }
            FIXED32 => {
                let bytes = self.take(4)?;
                FieldValue::Fixed32(u32::from_le_bytes(bytes.try_into().unwrap_or([0; 4])))
            }
            _ => return Err("unsupported wire type"),
        };
        Ok((field, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_spec_examples() {
        for (value, bytes) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes);
            assert_eq!(varint_len(value), bytes.len());
        }
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn nested_lengths_are_back_patched() {
        for body_len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 20_000] {
            let mut out = vec![0xaa];
            let body: Vec<u8> = (0..body_len).map(|i| (i % 251) as u8).collect();
            put_message(&mut out, 3, |o| o.extend_from_slice(&body));
            let mut expected = vec![0xaa];
            put_bytes(&mut expected, 3, &body);
            assert_eq!(out, expected, "{body_len}");
        }
    }

    #[test]
    fn reads_back_what_it_writes() {
        let mut message = Vec::new();
        put_uint(&mut message, 1, 300);
        put_fixed64(&mut message, 2, 0x0102_0304_0506_0708);
        put_str(&mut message, 3, "hello");
        put_fixed32(&mut message, 4, 7);
        put_uint(&mut message, 536_870_911, u64::MAX);
        let fields: Vec<_> = std::iter::from_fn({
            let mut reader = FieldReader::new(&message);
            move || reader.next_field()
        })
        .collect();
        assert_eq!(
            fields,
            vec![
                Ok((1, FieldValue::Varint(300))),
                Ok((2, FieldValue::Fixed64(0x0102_0304_0506_0708))),
                Ok((3, FieldValue::Bytes(b"hello"))),
                Ok((4, FieldValue::Fixed32(7))),
                Ok((536_870_911, FieldValue::Varint(u64::MAX))),
            ]
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x08], "truncated varint"),
            (&[0x08, 0x80], "truncated varint"),
            (&[0x0a, 0x05, b'a'], "truncated field"),
            (&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], "truncated field"),
            (&[0x11, 1, 2, 3], "truncated field"),
            (&[0x0d, 1], "truncated field"),
            (&[0x0b], "unsupported wire type"),
            (&[0x00, 0x01], "field number 0"),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                ],
                "varint overflows 64 bits",
            ),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "varint overflows 64 bits",
            ),
        ];
        for (bytes, reason) in cases {
            let mut reader = FieldReader::new(bytes);
            assert_eq!(reader.next_field(), Some(Err(*reason)), "{bytes:x?}");
        }
        assert_eq!(FieldReader::new(&[]).next_field(), None);
    }
}
