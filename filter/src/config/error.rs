//! A configuration error as `on_configure` logs it: one line naming the field and the reason.

use serde_path_to_error::{Path, Segment};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sidetrace config: `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// How errors about the document as a whole name their place.
pub const ROOT: &str = "(root)";

/// Keys and values come from the document: a newline in one must not split the log line.
pub fn invalid(field: &str, reason: impl AsRef<str>) -> ConfigError {
    ConfigError {
        field: escaped(field, true),
        reason: escaped(reason.as_ref(), false),
    }
}

/// A serde_json error, at the path serde_path_to_error kept.
pub fn from_serde(error: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let field = dotted(error.path());
    let error = error.into_inner();
    let mut reason = error.to_string();
    // A pluginConfig reaches the filter re-serialized from a protobuf Struct, so a line and
    // column point into text nobody wrote; the field path names the place instead. Syntax
    // errors keep theirs: only the raw text locates them.
    if error.is_data() {
        let position = format!(" at line {} column {}", error.line(), error.column());
        if let Some(message) = reason.strip_suffix(&position) {
            reason.truncate(message.len());
        }
    }
    invalid(&field, reason)
}

/// `collector.headers.x-org`, `propagation.inject[1]`, or `(root)`.
fn dotted(path: &Path) -> String {
    let mut dotted = String::new();
    for segment in path.iter() {
        // `?` stands for a member whose key was not read yet, a syntax error's place: the
        // enclosing object is the most the path can name.
        if matches!(segment, Segment::Unknown) {
            continue;
        }
        if !dotted.is_empty() && !matches!(segment, Segment::Seq { .. }) {
            dotted.push('.');
        }
        dotted.push_str(&segment.to_string());
    }
    if dotted.is_empty() {
        dotted.push_str(ROOT);
    }
    dotted
}

/// `text` with control characters escaped. Field paths escape backslashes too, so that a key
/// holding a backslash and one holding a control character stay distinguishable; reasons
/// already quote what they echo.
fn escaped(text: &str, backslashes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' if backslashes => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_reasons_stay_on_one_line() {
        let error = invalid("headers.a\nb\\c", "unknown field `a\r\u{1}`");
        assert_eq!(error.field, "headers.a\\nb\\\\c");
        assert_eq!(error.reason, "unknown field `a\\r\\u{1}`");
    }

    #[test]
    fn paths_are_dotted_with_indexes_in_brackets() {
        let document = br#"{"a": {"b\n": [1, {"c": "x"}]}}"#;
        type Document = std::collections::BTreeMap<
            String,
            std::collections::BTreeMap<String, (u8, std::collections::BTreeMap<String, u8>)>,
        >;
        let deserializer = &mut serde_json::Deserializer::from_slice(document);
        let error = serde_path_to_error::deserialize::<_, Document>(deserializer).unwrap_err();
        let error = from_serde(error);
        assert_eq!(error.field, "a.b\\n[1].c");
        assert_eq!(error.reason, "invalid type: string \"x\", expected u8");

        let deserializer = &mut serde_json::Deserializer::from_slice(b"{\"a\" 1}");
        let error = serde_path_to_error::deserialize::<_, Document>(deserializer).unwrap_err();
        let error = from_serde(error);
        assert_eq!(error.field, ROOT);
        assert_eq!(error.reason, "expected `:` at line 1 column 6");
    }
}
