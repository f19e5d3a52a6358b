//! W3C Baggage. The filter forwards an incoming `baggage` header untouched; it parses baggage
//! only to translate it to and from Jaeger's `uberctx-*` and to copy configured keys onto spans.

use super::Getter;

pub const HEADER: &str = "baggage";
pub const MAX_ENTRIES: usize = 64;
pub const MAX_BYTES: usize = 8192;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BaggageEntry {
    pub key: String,
    /// Percent-decoded.
    pub value: String,
    /// Raw `;`-separated properties after the value, trimmed; empty when none.
    pub properties: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Baggage {
    pub entries: Vec<BaggageEntry>,
}

impl Baggage {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The header was present but held no valid member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidBaggage;

/// Every `baggage` line joined; invalid members skipped; at most 64 entries and 8192 bytes.
pub fn parse(carrier: &impl Getter) -> Result<Option<Baggage>, InvalidBaggage> {
    let mut present = false;
    let mut baggage = Baggage::default();
    let mut bytes = 0usize;
    carrier.get_all(HEADER, &mut |line| {
        present = true;
        for member in line.split(',') {
            if baggage.entries.len() == MAX_ENTRIES || bytes + member.len() > MAX_BYTES {
                return;
            }
            if let Some(entry) = parse_member(member) {
                bytes += member.len() + 1;
                baggage.entries.push(entry);
            }
        }
    });
    match (present, baggage.is_empty()) {
        (false, _) => Ok(None),
        (true, true) => Err(InvalidBaggage),
        (true, false) => Ok(Some(baggage)),
    }
}

fn parse_member(member: &str) -> Option<BaggageEntry> {
    let (pair, properties) = match member.split_once(';') {
        Some((pair, properties)) => (pair, properties.trim()),
        None => (member, ""),
    };
    let (key, value) = pair.split_once('=')?;
    let (key, value) = (
        key.trim_matches([' ', '\t']),
        value.trim_matches([' ', '\t']),
    );
    if key.is_empty() || !key.bytes().all(is_token_char) || !value.bytes().all(is_value_octet) {
        return None;
    }
    Some(BaggageEntry {
        key: key.to_string(),
        value: percent_decode(value),
        properties: properties.to_string(),
    })
}

pub fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_value_octet(c: u8) -> bool {
    matches!(c, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

/// Decodes `%XX`; malformed escapes stay as written, and so does a value whose escapes decode
/// to invalid UTF-8.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let high = crate::hex::digit(bytes[i + 1], false);
            let low = crate::hex::digit(bytes[i + 2], false);
            if let (Some(high), Some(low)) = (high, low) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// Encodes everything outside the W3C value octets, and `%` itself.
pub fn percent_encode(text: &str, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for &c in text.as_bytes() {
        if is_value_octet(c) && c != b'%' {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(DIGITS[(c >> 4) as usize] as char);
            out.push(DIGITS[(c & 0xf) as usize] as char);
        }
    }
}

pub fn serialize(baggage: &Baggage) -> String {
    let mut out = String::new();
    for entry in &baggage.entries {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&entry.key);
        out.push('=');
        percent_encode(&entry.value, &mut out);
        if !entry.properties.is_empty() {
            out.push(';');
            out.push_str(&entry.properties);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::Headers;

    fn parsed(lines: &[&str]) -> Result<Option<Baggage>, InvalidBaggage> {
        parse(&Headers::from_pairs(lines.iter().map(|l| ("baggage", *l))))
    }

    #[test]
    fn parses_members_properties_and_escapes() {
        let baggage = parsed(&[
            "userId=alice, serverNode = DF%2028 ;prop1;p2=v",
            "isProduction=false",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(baggage.entries.len(), 3);
        assert_eq!(baggage.get("userId"), Some("alice"));
        assert_eq!(baggage.get("serverNode"), Some("DF 28"));
        assert_eq!(baggage.entries[1].properties, "prop1;p2=v");
        assert_eq!(baggage.get("isProduction"), Some("false"));
    }

    #[test]
    fn skips_invalid_members_and_reports_all_invalid() {
        let baggage = parsed(&["good=1,bad key=2,=3,novalue,q=\"x\",utf=caf%C3%A9"])
            .unwrap()
            .unwrap();
        let keys: Vec<_> = baggage.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["good", "utf"]);
        assert_eq!(baggage.get("utf"), Some("café"));
        assert_eq!(parsed(&["bad key=1"]), Err(InvalidBaggage));
        assert_eq!(parsed(&[]), Ok(None));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        // Escapes that decode to invalid UTF-8 leave the value as it was written.
        assert_eq!(percent_decode("bad%FF%C3"), "bad%FF%C3");
    }

    #[test]
    fn enforces_limits() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            parsed(&[&many.join(",")]).unwrap().unwrap().entries.len(),
            MAX_ENTRIES
        );
        let big = format!("a={},b=1", "x".repeat(MAX_BYTES));
        assert_eq!(parsed(&[&big]), Err(InvalidBaggage));
        let megabyte = "k=v,".repeat(250_000);
        assert_eq!(
            parsed(&[&megabyte]).unwrap().unwrap().entries.len(),
            MAX_ENTRIES
        );
    }

    #[test]
    fn serialization_round_trips() {
        let baggage = Baggage {
            entries: vec![
                BaggageEntry {
                    key: "a".into(),
                    value: "x y,z;%".into(),
                    properties: String::new(),
                },
                BaggageEntry {
                    key: "b".into(),
                    value: "é".into(),
                    properties: "p=1".into(),
                },
            ],
        };
        let text = serialize(&baggage);
        assert_eq!(text, "a=x%20y%2Cz%3B%25,b=%C3%A9;p=1");
        assert_eq!(parsed(&[&text]).unwrap().unwrap(), baggage);
    }
}
