//! A JSON object read as a map whose order matters: custom tags, collector metadata and
//! resource attributes are sent in the order configured.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// The object's members in document order; a key set twice is an error, as it would otherwise
/// be sent twice.
pub struct Pairs<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Pairs<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PairsVisitor(PhantomData))
    }
}

struct PairsVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<V> {
    type Value = Pairs<V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<V>, A::Error> {
        let mut pairs: Vec<(String, V)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, V>()? {
            if pairs.iter().any(|(seen, _)| *seen == key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            pairs.push((key, value));
        }
        Ok(Pairs(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<(String, String)>, String> {
        serde_json::from_str::<Pairs<String>>(text)
            .map(|pairs| pairs.0)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn members_keep_the_document_order() {
        let pairs = read(r#"{"z": "1", "a": "2", "m": "3"}"#).unwrap();
        let keys: Vec<&str> = pairs.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(pairs[1].1, "2");
    }

    #[test]
    fn a_key_set_twice_is_refused() {
        let error = read(r#"{"k": "1", "k": "2"}"#).unwrap_err();
        assert!(error.starts_with("duplicate key \"k\""), "{error}");
        let error = read(r#"["k"]"#).unwrap_err();
        assert!(
            error.starts_with("invalid type: sequence, expected an object"),
            "{error}"
        );
    }
}
