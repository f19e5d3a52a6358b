//! A proxy's serialized header map, read in place: the names and values stay in one string and
//! the block keeps where each lies, instead of two heap strings per header.
//!
//! Layout (proxy-wasm ABI): `u32` pair count, then per pair `u32` name length and `u32` value
//! length, then per pair the name, a NUL, the value, a NUL. All integers little-endian.

use super::Getter;
use std::ops::Range;

#[derive(Debug, Default)]
pub struct HeaderBlock {
    /// The names and values, each followed by a NUL.
    text: String,
    /// Where each readable pair's name and value lie in `text`, in order.
    pairs: Vec<(Range<usize>, Range<usize>)>,
    /// Names of pairs whose name or value is not UTF-8: they cannot carry trace context.
    unreadable: Vec<String>,
    /// The `name_bit` of every readable pair's name.
    name_bits: u64,
}

/// One of 64 bits for a header name, from its length and its last two bytes: a look-up whose
/// bit no held name has needs no walk through the pairs. Most names the formats ask for are
/// absent from a request, and a request carries far fewer than 64 headers.
fn name_bit(name: &[u8]) -> u64 {
    let (last, before_last) = match name {
        [.., before_last, last] => (*last, *before_last),
        [last] => (*last, 0),
        [] => (0, 0),
    };
    let mixed = name.len() + usize::from(last) + 2 * usize::from(before_last);
    1 << (mixed % 64)
}

/// The little-endian `u32` at `at`, if the buffer holds one there: the counts and lengths of a
/// proxy-wasm pairs buffer.
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?) as usize)
}

impl HeaderBlock {
    /// Indexes a serialized map, keeping its buffer. A truncated or inconsistent buffer keeps
    /// the pairs before the damage.
    pub fn parse(mut bytes: Vec<u8>) -> HeaderBlock {
        let count = read_u32(&bytes, 0).unwrap_or(0);
        // Every pair needs 8 bytes of lengths and 2 NULs: a buffer that cannot hold the pairs
        // it announces is corrupt.
        if count > bytes.len() / 10 {
            return HeaderBlock::default();
        }
        // Ranges are kept relative to the text, which starts after the lengths.
        let data = 4 + 8 * count;
        let mut pairs = Vec::with_capacity(count);
        let mut at: usize = 0;
        let mut name_bits = 0;
        for index in 0..count {
            let (Some(name_len), Some(value_len)) = (
                read_u32(&bytes, 4 + 8 * index),
                read_u32(&bytes, 8 + 8 * index),
            ) else {
                break;
            };
            let name = at..at.saturating_add(name_len);
            let value = name.end.saturating_add(1)..name.end.saturating_add(1 + value_len);
            if value.end >= bytes.len() - data {
                break;
            }
            at = value.end + 1;
            name_bits |= name_bit(&bytes[data + name.start..data + name.end]);
            pairs.push((name, value));
        }
        if pairs.is_empty() {
            return HeaderBlock::default();
        }
        bytes.truncate(data + at);
        bytes.drain(..data);
        // The usual case, every name and value UTF-8, is one check of the whole text: NULs are
        // ASCII, so every name and value then starts and ends on a character boundary.
        let bytes = match String::from_utf8(bytes) {
            Ok(text) => {
                return HeaderBlock {
                    text,
                    pairs,
                    unreadable: Vec::new(),
                    name_bits,
                };
            }
            Err(error) => error.into_bytes(),
        };
        let mut block = HeaderBlock::default();
        for (name, value) in pairs {
            let readable = (
                std::str::from_utf8(&bytes[name.clone()]),
                std::str::from_utf8(&bytes[value]),
            );
            match readable {
                (Ok(name), Ok(value)) => block.push(name, value),
                _ => block
                    .unreadable
                    .push(String::from_utf8_lossy(&bytes[name]).into_owned()),
            }
        }
        block
    }

    /// A block holding `pairs`, as a host would hand them over.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderBlock {
        let mut block = HeaderBlock::default();
        for (name, value) in pairs {
            block.push(name, value);
        }
        block
    }

    fn push(&mut self, name: &str, value: &str) {
        let name_start = self.text.len();
        self.text.push_str(name);
        self.text.push('\0');
        let value_start = self.text.len();
        self.text.push_str(value);
        self.text.push('\0');
        self.pairs.push((
            name_start..name_start + name.len(),
            value_start..value_start + value.len(),
        ));
        self.name_bits |= name_bit(name.as_bytes());
    }

    /// Names of the headers whose name or value is not text.
    pub fn unreadable(&self) -> &[String] {
        &self.unreadable
    }

    /// Every readable pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|(name, value)| (&self.text[name.clone()], &self.text[value.clone()]))
    }
}

impl HeaderBlock {
    /// False when no header is named `name`; true when one may be.
    fn may_hold(&self, name: &str) -> bool {
        self.name_bits & name_bit(name.as_bytes()) != 0
    }

    /// The values of the headers named `name`. Lengths first: most names differ in length, and
    /// that needs no look at the text.
    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.pairs
            .iter()
            .filter(move |(held, _)| {
                held.len() == name.len() && self.text.as_bytes()[held.clone()] == *name.as_bytes()
            })
            .map(|(_, value)| &self.text[value.clone()])
    }
}

impl Getter for HeaderBlock {
    fn get(&self, name: &str) -> Option<&str> {
        if !self.may_hold(name) {
            return None;
        }
        self.values(name).next()
    }

    fn get_all<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str)) {
        if self.may_hold(name) {
            self.values(name).for_each(visit);
        }
    }

    fn for_each<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str)) {
        self.iter().for_each(|(name, value)| visit(name, value));
    }

    /// Names are compared as bytes in place: only a match is taken out of the text as a
    /// string.
    fn for_each_prefixed<'a>(&'a self, prefix: &str, visit: &mut dyn FnMut(&'a str, &'a str)) {
        let text = self.text.as_bytes();
        for (name, value) in &self.pairs {
            if text[name.clone()].starts_with(prefix.as_bytes()) {
                visit(&self.text[name.clone()], &self.text[value.clone()]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a host hands over for `pairs`.
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
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

    fn all(block: &HeaderBlock) -> Vec<(String, String)> {
        block
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_pairs_in_order_and_sets_unreadable_ones_aside() {
        let bytes = serialize(&[
            (b":path", b"/orders/7"),
            (b"tracestate", b"a=1"),
            (b"x-bad", b"caf\xe9"),
            (b"tracestate", b"b=2"),
            (b"empty", b""),
        ]);
        let block = HeaderBlock::parse(bytes.clone());
        assert_eq!(block.unreadable(), ["x-bad"]);
        assert_eq!(block.get(":path"), Some("/orders/7"));
        assert_eq!(block.get("empty"), Some(""));
        assert_eq!(block.get("x-bad"), None);
        let mut lines = Vec::new();
        block.get_all("tracestate", &mut |line| lines.push(line));
        assert_eq!(lines, ["a=1", "b=2"]);
        assert_eq!(all(&block).len(), 4);
    }

    #[test]
    fn damaged_buffers_keep_what_precedes_the_damage() {
        let good = serialize(&[(b"a", b"1"), (b"b", b"2")]);
        let mut lying = good.clone();
        lying[0] = 0xff;
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        // (buffer, readable pairs)
        let cases: Vec<(Vec<u8>, usize)> = vec![
            (Vec::new(), 0),
            (vec![1, 0], 0),
            (good.clone(), 2),
            (good[..good.len() - 1].to_vec(), 1),
            (good[..good.len() - 4].to_vec(), 1),
            (good[..12].to_vec(), 0),
            (lying, 0),
            (huge, 0),
        ];
        for (bytes, readable) in cases {
            assert_eq!(
                HeaderBlock::parse(bytes.clone()).iter().count(),
                readable,
                "{bytes:?}"
            );
        }
    }

    /// The same pairs as a host hands them over, parsed, and built pair by pair.
    fn parsed_and_built(pairs: &[(String, String)]) -> [HeaderBlock; 2] {
        let raw: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        [
            HeaderBlock::parse(serialize(&raw)),
            HeaderBlock::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        ]
    }

    #[test]
    fn a_parsed_map_reads_as_the_pairs_it_was_made_of() {
        let pairs: Vec<(String, String)> = (0..20)
            .map(|i| (format!("h{}", i % 7), format!("v{i}")))
            .collect();
        for block in parsed_and_built(&pairs) {
            assert_eq!(all(&block), pairs);
        }
    }

    /// A look-up skips the walk only for names no held header has, and a prefix is compared a
    /// byte at a time: whatever is asked, each finds what a walk through every pair finds, in a
    /// parsed map and in one built pair by pair.
    #[test]
    fn look_ups_find_what_a_walk_finds() {
        let held = [
            ":method",
            ":path",
            ":authority",
            "user-agent",
            "x-request-id",
            "traceparent",
            "a",
            "uberctx-k",
        ];
        let asked = [
            "traceparent",
            "tracestate",
            "baggage",
            "b3",
            "x-b3-traceid",
            "x-b3-sampled",
            "x-b3-spanid",
            "x-amzn-trace-id",
            "uber-trace-id",
            "x-request-id",
            "a",
            "b",
            "",
            ":path",
            "uberctx-k",
        ];
        let pairs: Vec<(String, String)> = held
            .iter()
            .enumerate()
            .map(|(i, name)| (name.to_string(), format!("v{i}")))
            .collect();
        for block in parsed_and_built(&pairs) {
            for name in asked {
                let walked = pairs
                    .iter()
                    .find(|(held, _)| *held == name)
                    .map(|(_, value)| value.as_str());
                assert_eq!(block.get(name), walked, "{name}");
                let mut all_lines = Vec::new();
                block.get_all(name, &mut |line| all_lines.push(line));
                assert_eq!(all_lines, walked.into_iter().collect::<Vec<_>>(), "{name}");
            }
            for prefix in ["uberctx-", "uberctx-k", "uberctx-kk", "u", ":", "", "z"] {
                let walked: Vec<(&str, &str)> = pairs
                    .iter()
                    .filter(|(held, _)| held.starts_with(prefix))
                    .map(|(held, value)| (held.as_str(), value.as_str()))
                    .collect();
                let mut found = Vec::new();
                block.for_each_prefixed(prefix, &mut |name, value| found.push((name, value)));
                assert_eq!(found, walked, "{prefix}");
            }
        }
    }
}
