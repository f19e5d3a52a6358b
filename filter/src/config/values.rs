//! How the document's numbers and ordered maps are read.

use crate::sampling::Sampler;
use serde::de::{Deserializer, Error, MapAccess, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::Number;
use std::fmt;
use std::marker::PhantomData;

/// The largest count, so that a 32-bit module never truncates one held in a `usize`.
pub const COUNT_MAX: u64 = u32::MAX as u64;

/// Doubles are exact integers up to 2^53; past that, "whole" cannot be told apart.
const LARGEST_EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// A whole number in `MIN..=MAX`. Istio's `pluginConfig` is a protobuf Struct, which holds every
/// number as a double, so `512.0` and `5e3` are whole numbers too.
pub struct Whole<const MIN: u64, const MAX: u64>(pub u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Whole<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = Number::deserialize(deserializer)?;
        let float = number.as_f64().unwrap_or(f64::NAN);
        let whole = number.as_u64().or_else(|| {
            (float.fract() == 0.0 && (0.0..=LARGEST_EXACT_DOUBLE).contains(&float))
                .then_some(float as u64)
        });
        let unexpected = match number.as_i64() {
            Some(integer) => Unexpected::Signed(integer),
            None => Unexpected::Float(float),
        };
        match whole {
            None => Err(D::Error::invalid_type(unexpected, &"a whole number")),
            Some(n) if n < MIN => Err(D::Error::custom(format!("must be at least {MIN}, got {n}"))),
            Some(n) if n > MAX => Err(D::Error::custom(format!("must be at most {MAX}, got {n}"))),
            Some(n) => Ok(Whole(n)),
        }
    }
}

/// `randomSamplingPercentage`, which the sampler keeps in hundredths of a percent.
pub struct Percentage(pub Sampler);

impl<'de> Deserialize<'de> for Percentage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = Number::deserialize(deserializer)?;
        let percentage = number.as_f64().unwrap_or(f64::NAN);
        Sampler::new(percentage)
            .map(Percentage)
            .map_err(|reason| D::Error::custom(format!("{reason}, got {number}")))
    }
}

/// An object's members in document order: custom tags, collector metadata and resource
/// attributes are sent in the order configured. A key set twice is refused, as it would
/// otherwise be sent twice.
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
                return Err(A::Error::custom(format!("duplicate key {key:?}")));
            }
            pairs.push((key, value));
        }
        Ok(Pairs(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> Result<u64, String> {
        serde_json::from_str::<Whole<0, { u64::MAX }>>(text)
            .map(|number| number.0)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn whole_numbers_may_be_written_as_doubles() {
        for (text, expected) in [("512", 512), ("512.0", 512), ("5.12E2", 512), ("-0.0", 0)] {
            assert_eq!(whole(text), Ok(expected), "{text}");
        }
        assert_eq!(whole("18446744073709551615"), Ok(u64::MAX));
        for text in ["1e300", "18446744073709551616", "-1.0"] {
            let error = whole(text).unwrap_err();
            assert!(error.contains("expected a whole number"), "{text}: {error}");
        }
        for text in ["\"5\"", "null"] {
            let error = whole(text).unwrap_err();
            assert!(error.contains("expected a JSON number"), "{text}: {error}");
        }
    }

    #[test]
    fn percentages_are_kept_in_hundredths_and_refused_as_written() {
        let percentage = |text: &str| {
            serde_json::from_str::<Percentage>(text)
                .map(|percentage| percentage.0.percentage())
                .map_err(|error| error.to_string())
        };
        assert_eq!(percentage("1e2"), Ok(100.0));
        assert_eq!(percentage("0.29"), Ok(0.29));
        assert_eq!(percentage("33.333"), Ok(33.33));
        for (text, written) in [("-5", "-5"), ("100.5", "100.5"), ("1e300", "1e+300")] {
            let error = percentage(text).unwrap_err();
            assert!(
                error.ends_with(&format!("got {written}")),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn pairs_refuse_anything_but_an_object() {
        let error = serde_json::from_str::<Pairs<String>>(r#"["k"]"#)
            .err()
            .unwrap();
        assert!(error
            .to_string()
            .starts_with("invalid type: sequence, expected an object"));
    }
}
