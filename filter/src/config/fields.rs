//! Reads a parsed JSON object into typed values, one field at a time, naming the field in every
//! error. Each struct of the configuration takes its known fields, then `finish` rejects whatever
//! is left, so a typo never silently does nothing.

use super::json::{Json, ROOT};
use super::{invalid, ConfigError};

pub struct Fields<'j> {
    path: String,
    members: &'j [(String, Json)],
    taken: Vec<bool>,
    known: Vec<&'static str>,
}

/// A field's path below `parent` (`(root)` is the document itself).
pub fn child_path(parent: &str, key: &str) -> String {
    if parent == ROOT || parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// What a value is, for "expected X, got Y" reasons; strings are quoted and cut short so the
/// error stays one readable line.
fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean `{b}`"),
        Json::Number(text) => format!("number {text}"),
        Json::String(text) => format!("string {}", quoted(text)),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "an object".into(),
    }
}

/// `"text"` with quotes, backslashes and control characters escaped, at most 64 characters.
pub fn quoted(text: &str) -> String {
    delimited(text, '"')
}

/// `` `name` ``, escaped as `quoted` is: for names echoed back from the document.
fn backticked(text: &str) -> String {
    delimited(text, '`')
}

fn delimited(text: &str, delimiter: char) -> String {
    let mut out = String::from(delimiter);
    for (count, c) in text.chars().enumerate() {
        if count == 64 {
            out.push_str("...");
            break;
        }
        if c == delimiter {
            out.push('\\');
        }
        push_escaped(&mut out, c);
    }
    out.push(delimiter);
    out
}

/// `text` with backslashes and control characters escaped, so a name taken from the document
/// cannot split the log line it is echoed in.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

pub fn wrong_type(path: &str, value: &Json, expected: &str) -> ConfigError {
    invalid(
        path,
        format!("invalid type: {}, expected {expected}", describe(value)),
    )
}

/// `"a"`, `"b"` for "expected one of" lists.
fn one_of(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn string(path: &str, value: &Json) -> Result<String, ConfigError> {
    match value {
        Json::String(text) => Ok(text.clone()),
        other => Err(wrong_type(path, other, "a string")),
    }
}

/// A whole number from 0 to `max`. `512.0` and `5e3` count as whole: a protobuf Struct (Istio's
/// `pluginConfig`) holds every number as a double, and some converters print it that way.
pub fn integer(path: &str, value: &Json, max: u64) -> Result<u64, ConfigError> {
    let Json::Number(text) = value else {
        return Err(wrong_type(path, value, "a whole number"));
    };
    if text.contains(['.', 'e', 'E']) {
        let (number, _) = decimal(path, value)?;
        // Doubles are exact integers up to 2^53; past that "whole" cannot be told apart.
        if number.fract() != 0.0 || !(0.0..=9_007_199_254_740_992.0).contains(&number) {
            return Err(wrong_type(path, value, "a whole number"));
        }
        let number = number as u64;
        if number > max {
            return Err(invalid(path, format!("must be at most {max}, got {text}")));
        }
        return Ok(number);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(wrong_type(path, value, "a whole number"));
    }
    let mut number: u64 = 0;
    for digit in text.bytes() {
        number = number
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(digit - b'0')))
            .filter(|n| *n <= max)
            .ok_or_else(|| invalid(path, format!("must be at most {max}, got {text}")))?;
    }
    Ok(number)
}

/// A JSON number as the nearest-enough f64 for a percentage: exact for up to 15 significant
/// digits with an exponent within ±22 (every percentage anyone writes), within an ulp or two
/// beyond that. The text is already checked against JSON's grammar.
pub fn decimal<'j>(path: &str, value: &'j Json) -> Result<(f64, &'j str), ConfigError> {
    let Json::Number(text) = value else {
        return Err(wrong_type(path, value, "a number"));
    };
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (mantissa_text, exponent_text) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, ""),
    };
    let mut mantissa: u64 = 0;
    let mut exponent: i64 = 0;
    let mut after_point = false;
    for byte in mantissa_text.bytes() {
        match byte {
            b'.' => after_point = true,
            digit if mantissa < 1_000_000_000_000_000_000 => {
                mantissa = mantissa * 10 + u64::from(digit - b'0');
                exponent -= i64::from(after_point);
            }
            // Beyond 19 significant digits only the magnitude matters.
            _ => exponent += i64::from(!after_point),
        }
    }
    let (exponent_negative, exponent_digits) = match exponent_text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, exponent_text.trim_start_matches('+')),
    };
    let written = exponent_digits.bytes().fold(0i64, |e, digit| {
        (e * 10 + i64::from(digit - b'0')).min(1_000)
    });
    exponent += if exponent_negative { -written } else { written };
    exponent = exponent.clamp(-400, 400);
    let scale = |e: i64| {
        let mut power = 1.0f64;
        for _ in 0..e.unsigned_abs() {
            power *= 10.0;
        }
        power
    };
    let mut number = mantissa as f64;
    if exponent >= 0 {
        number *= scale(exponent);
    } else if exponent >= -22 {
        number /= scale(exponent);
    } else {
        number = number / scale(-22) / scale(exponent + 22);
    }
    Ok((if negative { -number } else { number }, text))
}

pub fn boolean(path: &str, value: &Json) -> Result<bool, ConfigError> {
    match value {
        Json::Bool(b) => Ok(*b),
        other => Err(wrong_type(path, other, "a boolean")),
    }
}

/// One of a fixed set of names.
pub fn choice<T: Copy>(
    path: &str,
    value: &Json,
    choices: &[(&'static str, T)],
) -> Result<T, ConfigError> {
    let name = string(path, value)?;
    choices
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, choice)| *choice)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(known, _)| *known).collect();
            invalid(
                path,
                format!(
                    "unknown variant {}, expected one of {}",
                    backticked(&name),
                    one_of(&names)
                ),
            )
        })
}

/// A list, each element read by `read` with its own path.
pub fn list<T>(
    path: &str,
    value: &Json,
    read: impl Fn(&str, &Json) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let Json::Array(elements) = value else {
        return Err(wrong_type(path, value, "a list"));
    };
    elements
        .iter()
        .enumerate()
        .map(|(i, element)| read(&index_path(path, i), element))
        .collect()
}

/// An object used as a map, each value read by `read`, in the order written; a repeated key is
/// an error. (A list, not a tree: these maps hold a handful of entries, read once.)
pub fn map<T>(
    path: &str,
    value: &Json,
    read: impl Fn(&str, &Json) -> Result<T, ConfigError>,
) -> Result<Vec<(String, T)>, ConfigError> {
    let Json::Object(members) = value else {
        return Err(wrong_type(path, value, "an object"));
    };
    let mut map: Vec<(String, T)> = Vec::with_capacity(members.len());
    for (key, value) in members {
        let value_path = child_path(path, key);
        let read_value = read(&value_path, value)?;
        if map.iter().any(|(seen, _)| seen == key) {
            return Err(invalid(&value_path, "is set twice"));
        }
        map.push((key.clone(), read_value));
    }
    Ok(map)
}

impl<'j> Fields<'j> {
    /// The fields of the object at `path`.
    pub fn of(path: &str, value: &'j Json) -> Result<Fields<'j>, ConfigError> {
        let Json::Object(members) = value else {
            return Err(wrong_type(path, value, "an object"));
        };
        Ok(Fields {
            path: path.to_string(),
            members,
            taken: vec![false; members.len()],
            known: Vec::new(),
        })
    }

    /// Reads field `key` with `read` when it is set; `null` counts as not set, as it does for
    /// a protobuf Struct that Istio hands over.
    pub fn get<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(&str, &'j Json) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        match self.find(key)? {
            Some((path, value)) => read(&path, value).map(Some),
            None => Ok(None),
        }
    }

    /// The field's path and value, kept out of `get` so each field type does not get its own
    /// copy of the search.
    #[inline(never)]
    fn find(&mut self, key: &'static str) -> Result<Option<(String, &'j Json)>, ConfigError> {
        self.known.push(key);
        let mut found = None;
        for (i, (name, value)) in self.members.iter().enumerate() {
            if name == key {
                if found.is_some() {
                    return Err(invalid(&child_path(&self.path, key), "is set twice"));
                }
                self.taken[i] = true;
                found = Some(value);
            }
        }
        Ok(match found {
            None | Some(Json::Null) => None,
            Some(value) => Some((child_path(&self.path, key), value)),
        })
    }

    /// A boolean field, `default` when not set. One copy for every flag: inlined, each would
    /// carry its own.
    #[inline(never)]
    pub fn flag(&mut self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.get(key, boolean)?.unwrap_or(default))
    }

    /// Like `get`, for a field that must be set.
    pub fn require<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(&str, &'j Json) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        match self.find(key)? {
            Some((path, value)) => read(&path, value),
            None => Err(invalid(&child_path(&self.path, key), "is required")),
        }
    }

    /// Every field of the object must have been read: anything else is a typo.
    pub fn finish(self) -> Result<(), ConfigError> {
        match self.taken.iter().position(|taken| !taken) {
            None => Ok(()),
            Some(i) => {
                let name = &self.members[i].0;
                Err(invalid(
                    &child_path(&self.path, name),
                    format!(
                        "unknown field {}, expected one of {}",
                        backticked(name),
                        one_of(&self.known)
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::json::parse;
    use super::*;

    fn number(text: &str) -> Json {
        Json::Number(text.into())
    }

    #[test]
    fn integers_are_whole_and_bounded() {
        let cases: &[(&str, u64, Result<u64, &str>)] = &[
            ("0", 10, Ok(0)),
            ("10", 10, Ok(10)),
            ("11", 10, Err("must be at most 10, got 11")),
            ("18446744073709551615", u64::MAX, Ok(u64::MAX)),
            ("18446744073709551616", u64::MAX, Err("must be at most")),
            (
                "1.5",
                10,
                Err("invalid type: number 1.5, expected a whole number"),
            ),
            (
                "-1",
                10,
                Err("invalid type: number -1, expected a whole number"),
            ),
            ("-1.0", 10, Err("expected a whole number")),
            ("512.0", 1000, Ok(512)),
            ("5e3", 10_000, Ok(5000)),
            ("5.12E2", 1000, Ok(512)),
            ("0.5e1", 10, Ok(5)),
            ("5e3", 1000, Err("must be at most 1000, got 5e3")),
            ("1e300", u64::MAX, Err("expected a whole number")),
        ];
        for (text, max, expected) in cases {
            let got = integer("f", &number(text), *max);
            match (got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text}"),
                (Err(error), Err(want)) => {
                    assert!(error.reason.contains(want), "{text}: {}", error.reason)
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        let error = integer("f", &Json::String("5".into()), 10).unwrap_err();
        assert_eq!(
            error.reason,
            "invalid type: string \"5\", expected a whole number"
        );
    }

    #[test]
    fn decimals_agree_with_the_standard_parser() {
        for text in [
            "0",
            "1",
            "-1",
            "0.01",
            "0.1",
            "1.5",
            "33.333",
            "99.99",
            "100",
            "100.0",
            "1e2",
            "1E-2",
            "2.5e+1",
            "0.000001",
            "12345678901234567890123",
            "1e400",
            "1e-400",
            "123.456e-5",
            "0.1000000000000000055511151231257827",
        ] {
            let value = number(text);
            let (got, written) = decimal("f", &value).unwrap();
            let want: f64 = text.parse().unwrap();
            assert_eq!(written, text);
            let close = got == want || ((got - want) / want).abs() < 1e-15;
            assert!(close, "{text}: {got} vs {want}");
        }
    }

    #[test]
    fn fields_are_taken_once_and_leftovers_are_unknown() {
        let json = parse(r#"{"a": 1, "b": null, "c": "x"}"#).unwrap();
        let mut fields = Fields::of("(root)", &json).unwrap();
        assert_eq!(fields.get("a", |p, v| integer(p, v, 9)).unwrap(), Some(1));
        assert_eq!(fields.get("b", string).unwrap(), None, "null is unset");
        assert_eq!(fields.get("z", string).unwrap(), None);
        let error = fields.finish().unwrap_err();
        assert_eq!(error.field, "c");
        assert_eq!(
            error.reason,
            "unknown field `c`, expected one of `a`, `b`, `z`"
        );

        let twice = parse(r#"{"a": 1, "a": 2}"#).unwrap();
        let error = Fields::of("x", &twice)
            .unwrap()
            .get("a", |p, v| integer(p, v, 9))
            .unwrap_err();
        assert_eq!(
            (error.field.as_str(), error.reason.as_str()),
            ("x.a", "is set twice")
        );

        let missing = parse("{}").unwrap();
        let error = Fields::of("x", &missing)
            .unwrap()
            .require("a", string)
            .unwrap_err();
        assert_eq!(
            (error.field.as_str(), error.reason.as_str()),
            ("x.a", "is required")
        );
    }

    #[test]
    fn lists_maps_and_choices_name_their_elements() {
        let json = parse(r#"{"l": ["a", 2], "m": {"k": "v", "n": true}, "e": "up"}"#).unwrap();
        let Json::Object(members) = &json else {
            unreachable!()
        };
        let error = list("l", &members[0].1, string).unwrap_err();
        assert_eq!(error.field, "l[1]");
        let error = map("m", &members[1].1, string).unwrap_err();
        assert_eq!(error.field, "m.n");
        assert_eq!(
            error.reason,
            "invalid type: boolean `true`, expected a string"
        );
        let error = choice("e", &members[2].1, &[("down", 0), ("left", 1)]).unwrap_err();
        assert_eq!(
            error.reason,
            "unknown variant `up`, expected one of `down`, `left`"
        );
        let twice = parse(r#"{"k": "1", "k": "2"}"#).unwrap();
        assert_eq!(map("m", &twice, string).unwrap_err().reason, "is set twice");
    }

    #[test]
    fn quoting_keeps_one_line() {
        assert_eq!(quoted("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u{1}\"");
        assert!(quoted(&"x".repeat(100)).ends_with("...\""));
        assert_eq!(backticked("a`b\n\"c"), "`a\\`b\\n\"c`");
    }
}
