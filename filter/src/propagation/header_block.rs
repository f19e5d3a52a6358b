//! A proxy's serialized header map, read in place: one buffer and one offset table, instead of
//! two heap strings per header. The request path reads every request's headers, so this is the
//! difference between one allocation and thirty.
//!
//! Layout (proxy-wasm ABI): `u32` pair count, then per pair `u32` name length and `u32` value
//! length, then per pair the name, a NUL, the value, a NUL. All integers little-endian.

use super::Getter;
use crate::short_compare::equal_short;

#[derive(Debug, Default)]
pub struct HeaderBlock {
    bytes: Vec<u8>,
    /// (name start, name end, value start, value end) of each readable pair, in order.
    pairs: Vec<(u32, u32, u32, u32)>,
}

impl HeaderBlock {
    /// Indexes `bytes` in place. Pairs whose name or value is not UTF-8 cannot carry trace
    /// context and are left out; their count is returned. A truncated or inconsistent buffer
    /// keeps the pairs before the damage and counts the rest as skipped.
    pub fn parse(bytes: Vec<u8>) -> (HeaderBlock, u32) {
        let mut pairs = Vec::new();
        let count = read_u32(&bytes, 0).unwrap_or(0) as usize;
        // Every pair needs 8 bytes of lengths and 2 NULs: a buffer that cannot hold the pairs it
        // announces is corrupt, and none of it is trusted.
        if count > bytes.len() / 10 {
            return (HeaderBlock::default(), count.min(u32::MAX as usize) as u32);
        }
        let mut skipped = 0;
        let mut data = 4 + 8 * count;
        // The usual case, all of it valid UTF-8, is one check: NULs are ASCII, so every name and
        // value then starts and ends on a character boundary. Otherwise each pair is checked.
        let all_text = bytes
            .get(data..)
            .is_some_and(|text| std::str::from_utf8(text).is_ok());
        pairs.reserve_exact(count);
        for index in 0..count {
            let lengths = (
                read_u32(&bytes, 4 + 8 * index),
                read_u32(&bytes, 8 + 8 * index),
            );
            let (Some(name_len), Some(value_len)) = lengths else {
                skipped += (count - index) as u32;
                break;
            };
            let name = data..data.saturating_add(name_len as usize);
            let value_start = name.end.saturating_add(1);
            let value = value_start..value_start.saturating_add(value_len as usize);
            if value.end >= bytes.len() || value.end > u32::MAX as usize {
                skipped += (count - index) as u32;
                break;
            }
            data = value.end + 1;
            let readable = all_text
                || std::str::from_utf8(&bytes[name.clone()]).is_ok()
                    && std::str::from_utf8(&bytes[value.clone()]).is_ok();
            if readable {
                pairs.push((
                    name.start as u32,
                    name.end as u32,
                    value.start as u32,
                    value.end as u32,
                ));
            } else {
                skipped += 1;
            }
        }
        (HeaderBlock { bytes, pairs }, skipped)
    }

    /// A block holding one header, from a value looked up alone: the tracer then reads it as it
    /// reads a whole map. A value that is not UTF-8 is left out and counted, as `parse` does.
    pub fn single(name: &str, value: Vec<u8>) -> (HeaderBlock, u32) {
        if std::str::from_utf8(&value).is_err() || value.len() + name.len() > u32::MAX as usize {
            return (HeaderBlock::default(), 1);
        }
        let value_end = value.len() as u32;
        let mut bytes = value;
        bytes.extend_from_slice(name.as_bytes());
        let pairs = vec![(value_end, bytes.len() as u32, 0, value_end)];
        (HeaderBlock { bytes, pairs }, 0)
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn text(&self, start: u32, end: u32) -> &str {
        let bytes = &self.bytes[start as usize..end as usize];
        // SAFETY: `parse` indexes only ranges it checked with `str::from_utf8`, and `bytes` is
        // never modified afterwards. Re-checking on every lookup was most of a lookup's cost.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Lengths first: most names differ in length, and that needs no slice of the buffer.
    fn name_is(&self, start: u32, end: u32, name: &str) -> bool {
        (end - start) as usize == name.len()
            && equal_short(&self.bytes[start as usize..end as usize], name.as_bytes())
    }

    /// Every readable pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|&(name_start, name_end, value_start, value_end)| {
                (
                    self.text(name_start, name_end),
                    self.text(value_start, value_end),
                )
            })
    }
}

/// The little-endian `u32` at `at`, if the buffer holds one there.
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?))
}

impl Getter for HeaderBlock {
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|&&(start, end, _, _)| self.name_is(start, end, name))
            .map(|&(_, _, value_start, value_end)| self.text(value_start, value_end))
    }

    fn get_all<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str)) {
        for &(start, end, value_start, value_end) in &self.pairs {
            if self.name_is(start, end, name) {
                visit(self.text(value_start, value_end));
            }
        }
    }

    fn for_each<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str)) {
        for (key, value) in self.iter() {
            visit(key, value);
        }
    }
}

/// The proxy-wasm serialization of `pairs`: what a host hands over for a header map, and what it
/// takes as a gRPC call's initial metadata.
pub fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_header_reads_like_a_map_of_one() {
        let (block, skipped) = HeaderBlock::single("traceparent", b"00-ab".to_vec());
        assert_eq!(
            (block.get("traceparent"), block.len(), skipped),
            (Some("00-ab"), 1, 0)
        );
        assert_eq!(block.get("tracestate"), None);
        let mut seen = Vec::new();
        block.for_each(&mut |name, value| seen.push((name, value)));
        assert_eq!(seen, [("traceparent", "00-ab")]);
        let (block, skipped) = HeaderBlock::single("traceparent", vec![0xff, b'0']);
        assert_eq!(
            (block.get("traceparent"), block.len(), skipped),
            (None, 0, 1)
        );
    }

    fn all(block: &HeaderBlock) -> Vec<(String, String)> {
        let mut out = Vec::new();
        block.for_each(&mut |k, v| out.push((k.to_string(), v.to_string())));
        out
    }

    #[test]
    fn reads_pairs_in_place_and_skips_unreadable_ones() {
        let bytes = serialize(&[
            (b":path", b"/orders/7"),
            (b"tracestate", b"a=1"),
            (b"x-bad", b"caf\xe9"),
            (b"tracestate", b"b=2"),
            (b"empty", b""),
        ]);
        let (block, skipped) = HeaderBlock::parse(bytes);
        assert_eq!(skipped, 1);
        assert_eq!(block.len(), 4);
        assert_eq!(block.get(":path"), Some("/orders/7"));
        assert_eq!(block.get("tracestate"), Some("a=1"));
        assert_eq!(block.get("empty"), Some(""));
        assert_eq!(block.get("x-bad"), None);
        assert_eq!(block.get("missing"), None);
        let mut lines = Vec::new();
        block.get_all("tracestate", &mut |line| lines.push(line));
        assert_eq!(lines, ["a=1", "b=2"]);
        assert_eq!(all(&block)[0], (":path".into(), "/orders/7".into()));
    }

    #[test]
    fn damaged_buffers_keep_what_precedes_the_damage() {
        let good = serialize(&[(b"a", b"1"), (b"b", b"2")]);
        let cases: Vec<(Vec<u8>, usize)> = vec![
            (Vec::new(), 0),
            (vec![1, 0], 0),
            (good.clone(), 2),
            (good[..good.len() - 1].to_vec(), 1),
            (good[..good.len() - 4].to_vec(), 1),
            (good[..12].to_vec(), 0),
            (
                {
                    let mut lying = good.clone();
                    lying[0] = 0xff;
                    lying
                },
                0,
            ),
            (
                {
                    let mut huge = good.clone();
                    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
                    huge
                },
                0,
            ),
        ];
        for (bytes, readable) in cases {
            let (block, _) = HeaderBlock::parse(bytes.clone());
            assert_eq!(block.len(), readable, "{bytes:?}");
        }
    }

    #[test]
    fn agrees_with_the_list_carrier_on_arbitrary_headers() {
        let pairs: Vec<(String, String)> = (0..20)
            .map(|i| (format!("h{}", i % 7), format!("v{i}")))
            .collect();
        let raw: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let (block, skipped) = HeaderBlock::parse(serialize(&raw));
        let list = super::super::Headers {
            entries: pairs.clone(),
        };
        assert_eq!(skipped, 0);
        for i in 0..8 {
            let name = format!("h{i}");
            assert_eq!(block.get(&name), list.get(&name), "{name}");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            block.get_all(&name, &mut |v| a.push(v.to_string()));
            list.get_all(&name, &mut |v| b.push(v.to_string()));
            assert_eq!(a, b, "{name}");
        }
    }
}
