//! Strings the configuration checks as it reads them: each type refuses a bad value where it
//! stands, so the error names that value's own path.

use crate::context::Format;
use serde::Deserialize;

/// An HTTP header name as Envoy stores it: a lowercase token.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
        })
}

/// A header name, lowercased as Envoy stores names, then checked.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct HeaderName(pub String);

impl TryFrom<String> for HeaderName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let name = name.to_ascii_lowercase();
        if !is_header_name(&name) {
            return Err(format!("{name:?} is not a header name"));
        }
        Ok(HeaderName(name))
    }
}

/// A gRPC metadata value sent with every export.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct HeaderValue(pub String);

impl TryFrom<String> for HeaderValue {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, &'static str> {
        // A CR or LF here would smuggle extra metadata into every export.
        if text.bytes().any(|c| c < 0x20 && c != b'\t' || c == 0x7f) {
            return Err("must not contain control characters");
        }
        Ok(HeaderValue(text))
    }
}

/// The Envoy cluster exports go to.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct ClusterName(pub String);

impl TryFrom<String> for ClusterName {
    type Error = &'static str;

    fn try_from(name: String) -> Result<Self, &'static str> {
        if name.trim().is_empty() {
            return Err("must name an Envoy cluster");
        }
        Ok(ClusterName(name))
    }
}

/// The environment variable an environment custom tag reads.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct VariableName(pub String);

impl TryFrom<String> for VariableName {
    type Error = &'static str;

    fn try_from(name: String) -> Result<Self, &'static str> {
        if name.is_empty() {
            return Err("must not be empty");
        }
        Ok(VariableName(name))
    }
}

/// An `excludePaths` entry: a prefix of request paths.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct PathPrefix(pub String);

impl TryFrom<String> for PathPrefix {
    type Error = String;

    fn try_from(prefix: String) -> Result<Self, String> {
        if !prefix.starts_with('/') {
            return Err(format!("must start with '/', got {prefix:?}"));
        }
        Ok(PathPrefix(prefix))
    }
}

/// A propagation format by its configuration name.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct FormatName(pub Format);

impl TryFrom<String> for FormatName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Format::from_name(&name).map(FormatName).ok_or_else(|| {
            format!(
                "unknown format {name:?} (expected one of tracecontext, baggage, b3, b3multi, jaeger, xray)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|error| error.to_string())
    }

    #[test]
    fn header_names_are_lowercased_tokens() {
        assert_eq!(
            read::<HeaderName>(r#""X-Trace-Id""#).unwrap().0,
            "x-trace-id"
        );
        for bad in [r#""""#, r#""x trace""#, r#""x:y""#, r#""é""#] {
            let error = read::<HeaderName>(bad).err().unwrap();
            assert!(error.contains("is not a header name"), "{bad}: {error}");
        }
        let error = read::<HeaderName>("5").err().unwrap();
        assert!(error.starts_with("invalid type: integer `5`, expected a string"));
    }

    #[test]
    fn each_name_refuses_its_own_kind_of_mistake() {
        assert!(read::<HeaderValue>(r#""a\tb""#).is_ok());
        let error = read::<HeaderValue>(r#""a\r\nx-evil: 1""#).err().unwrap();
        assert!(error.starts_with("must not contain control characters"));
        let error = read::<ClusterName>(r#"" ""#).err().unwrap();
        assert!(error.starts_with("must name an Envoy cluster"));
        let error = read::<VariableName>(r#""""#).err().unwrap();
        assert!(error.starts_with("must not be empty"));
        let error = read::<PathPrefix>(r#""health""#).err().unwrap();
        assert!(error.starts_with("must start with '/', got \"health\""));
        assert_eq!(
            read::<FormatName>(r#""b3multi""#).unwrap().0,
            Format::B3Multi
        );
        let error = read::<FormatName>(r#""zipkin""#).err().unwrap();
        assert!(error.starts_with("unknown format \"zipkin\" (expected one of"));
    }
}
