//! Protobuf wire-format writing, by hand: the span encoder writes straight into the output
//! buffer with no intermediate message structs.

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

/// Writes a nested message whose body `write` produces, back-patching its length. One byte is
/// reserved for the length: most nested messages (attributes, status) fit it, so only larger
/// bodies are shifted to make room.
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
    let mut prefix = [0u8; 10];
    let prefix_len = varint_len(body_len as u64);
    let mut value = body_len as u64;
    for byte in prefix.iter_mut().take(prefix_len) {
        *byte = (value as u8 & 0x7f) | if value >= 0x80 { 0x80 } else { 0 };
        value >>= 7;
    }
    out[slot] = prefix[0];
    out.splice(slot + 1..slot + 1, prefix[1..prefix_len].iter().copied());
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
        for body_len in [0usize, 1, 127, 128, 300, 20_000] {
            let mut out = vec![0xaa];
            put_message(&mut out, 3, |o| {
                o.extend(std::iter::repeat_n(7u8, body_len))
            });
            let mut expected = vec![0xaa];
            put_bytes(&mut expected, 3, &vec![7u8; body_len]);
            assert_eq!(out, expected, "{body_len}");
        }
    }
}
