//! Numbers as the configuration holds them. Istio's `pluginConfig` is a protobuf Struct, which
//! holds every number as a double, so a whole number may arrive written `512.0` or `5e3`.

use crate::sampling::Sampler;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;
use std::fmt;

/// Doubles are exact integers up to 2^53; past that, "whole" cannot be told apart.
const LARGEST_EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// The bound of counts held in a `usize`, so that a 32-bit module never truncates one.
pub const COUNT_MAX: u64 = u32::MAX as u64;

/// A whole number in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> Whole<MIN, MAX> {
    /// For counts: `MAX` is at most `COUNT_MAX` wherever this is called.
    pub fn count(self) -> usize {
        self.0 as usize
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Whole<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = deserializer.deserialize_any(WholeNumber)?;
        if number < MIN {
            return Err(de::Error::custom(format_args!(
                "must be at least {MIN}, got {number}"
            )));
        }
        if number > MAX {
            return Err(de::Error::custom(format_args!(
                "must be at most {MAX}, got {number}"
            )));
        }
        Ok(Whole(number))
    }
}

struct WholeNumber;

impl Visitor<'_> for WholeNumber {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<u64, E> {
        Ok(number)
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<u64, E> {
        u64::try_from(number).map_err(|_| E::invalid_type(Unexpected::Signed(number), &self))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<u64, E> {
        if number.fract() == 0.0 && (0.0..=LARGEST_EXACT_DOUBLE).contains(&number) {
            Ok(number as u64)
        } else {
            Err(E::invalid_type(Unexpected::Float(number), &self))
        }
    }
}

/// `randomSamplingPercentage`: 0 to 100, which the sampler keeps in hundredths of a percent.
pub struct Percentage(pub Sampler);

impl<'de> Deserialize<'de> for Percentage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(PercentageVisitor)
            .map(Percentage)
    }
}

struct PercentageVisitor;

/// The sampler for `percentage`, or the sampler's reason with the number as the document had it.
fn sampler<E: de::Error>(percentage: f64, written: impl fmt::Display) -> Result<Sampler, E> {
    Sampler::new(percentage).map_err(|reason| E::custom(format_args!("{reason}, got {written}")))
}

impl Visitor<'_> for PercentageVisitor {
    type Value = Sampler;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Sampler, E> {
        sampler(number as f64, number)
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Sampler, E> {
        sampler(number as f64, number)
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Sampler, E> {
        // Debug, unlike Display, writes 1e300 with its exponent rather than 301 digits.
        sampler(number, format_args!("{number:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole<const MIN: u64, const MAX: u64>(text: &str) -> Result<u64, String> {
        serde_json::from_str::<Whole<MIN, MAX>>(text)
            .map(|number| number.0)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn whole_numbers_may_be_written_as_doubles() {
        assert_eq!(whole::<0, 1000>("512"), Ok(512));
        assert_eq!(whole::<0, 1000>("512.0"), Ok(512));
        assert_eq!(whole::<0, 10_000>("5e3"), Ok(5000));
        assert_eq!(whole::<0, 1000>("5.12E2"), Ok(512));
        assert_eq!(whole::<0, 10>("0.5e1"), Ok(5));
        assert_eq!(whole::<0, 10>("-0.0"), Ok(0));
        assert_eq!(
            whole::<0, { u64::MAX }>("18446744073709551615"),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn whole_numbers_are_whole_and_bounded() {
        let cases: &[(&str, &str)] = &[
            (
                "512.5",
                "invalid type: floating point `512.5`, expected a whole number",
            ),
            ("-1", "invalid type: integer `-1`, expected a whole number"),
            (
                "-1.0",
                "invalid type: floating point `-1.0`, expected a whole number",
            ),
            ("1e300", "expected a whole number"),
            ("18446744073709551616", "expected a whole number"),
            ("1e501", "number out of range"),
            (
                "\"5\"",
                "invalid type: string \"5\", expected a whole number",
            ),
            ("null", "invalid type: null, expected a whole number"),
            ("11", "must be at most 10, got 11"),
            ("5e3", "must be at most 10, got 5000"),
            ("0", "must be at least 1, got 0"),
        ];
        for (text, expected) in cases {
            let error = whole::<1, 10>(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    fn percentage(text: &str) -> Result<f64, String> {
        serde_json::from_str::<Percentage>(text)
            .map(|percentage| percentage.0.percentage())
            .map_err(|error| error.to_string())
    }

    #[test]
    fn percentages_are_kept_in_hundredths() {
        assert_eq!(percentage("0"), Ok(0.0));
        assert_eq!(percentage("100"), Ok(100.0));
        assert_eq!(percentage("1e2"), Ok(100.0));
        assert_eq!(percentage("0.01"), Ok(0.01));
        assert_eq!(percentage("0.29"), Ok(0.29));
        assert_eq!(percentage("33.333"), Ok(33.33));
        assert_eq!(percentage("99.99"), Ok(99.99));
    }

    #[test]
    fn percentages_outside_0_to_100_name_the_number() {
        let cases: &[(&str, &str)] = &[
            ("101", "must be between 0 and 100, got 101"),
            ("-5", "must be between 0 and 100, got -5"),
            ("100.5", "must be between 0 and 100, got 100.5"),
            ("1e300", "must be between 0 and 100, got 1e300"),
            ("1e501", "number out of range"),
            ("\"50\"", "invalid type: string \"50\", expected a number"),
        ];
        for (text, expected) in cases {
            let error = percentage(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
