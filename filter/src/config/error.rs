//! A configuration error as `on_configure` logs it: one line naming the field and the reason.

use serde_path_to_error::Segment;
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

/// Keys and values come from the document: a newline in one must not split the log line. Field
/// paths escape backslashes too, so that a key holding a backslash and one holding a control
/// character stay distinguishable; reasons already quote what they echo.
pub fn invalid(field: &str, reason: impl AsRef<str>) -> ConfigError {
    let one_line = |text: &str, backslashes: bool| -> String {
        text.chars()
            .map(|c| match c {
                '\\' if backslashes => "\\\\".to_string(),
                c if c.is_control() => c.escape_debug().to_string(),
                c => c.to_string(),
            })
            .collect()
    };
    ConfigError {
        field: one_line(field, true),
        reason: one_line(reason.as_ref(), false),
    }
}

/// A serde_json error at the path serde_path_to_error kept: `collector.headers.x-org`,
/// `propagation.inject[1]`, or `(root)`.
pub fn from_serde(error: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let mut field = String::new();
    for segment in error.path() {
        // `?` stands for a member whose key was not read yet, a syntax error's place: the
        // enclosing object is the most the path can name.
        if matches!(segment, Segment::Unknown) {
            continue;
        }
        if !field.is_empty() && !matches!(segment, Segment::Seq { .. }) {
            field.push('.');
        }
        field.push_str(&segment.to_string());
    }
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
    invalid(if field.is_empty() { ROOT } else { &field }, reason)
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
}
