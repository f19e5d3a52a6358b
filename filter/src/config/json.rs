//! A small JSON parser for the filter's configuration. It keeps the path of the value it is
//! reading, so a syntax error names its field just as a type error does; numbers keep their text
//! so each field converts them to what it holds. A general-purpose JSON library with its float
//! formatting and parsing tables was over a third of the module for a document read once.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number as written, checked against JSON's grammar.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// A syntax error: the path of the value being read (`(root)` for the document) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub path: String,
    pub reason: &'static str,
}

/// Deep enough for any configuration, shallow enough that a hostile one cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

pub fn parse(text: &str) -> Result<Json, SyntaxError> {
    let mut parser = Parser {
        text,
        pos: 0,
        path: Vec::new(),
    };
    parser.skip_whitespace();
    let value = parser.value()?;
    parser.skip_whitespace();
    if parser.pos < text.len() {
        return Err(parser.error("trailing characters after the document"));
    }
    Ok(value)
}

enum Step {
    Key(String),
    Index(usize),
}

/// How errors about the document as a whole name their place.
pub const ROOT: &str = "(root)";

/// `collector.headers.x-org`, `propagation.inject[1]`, or `(root)`.
fn render_path(steps: &[Step]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Step::Index(index) => {
                let _ = write!(path, "[{index}]");
            }
        }
    }
    if path.is_empty() {
        path.push_str(ROOT);
    }
    path
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    path: Vec<Step>,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> SyntaxError {
        SyntaxError {
            path: render_path(&self.path),
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Json, SyntaxError> {
        if self.path.len() > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            None => Err(self.error("EOF while parsing a value")),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, SyntaxError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn object(&mut self) -> Result<Json, SyntaxError> {
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error(match self.peek() {
                    None => "EOF while parsing an object",
                    Some(_) => "key must be a string",
                }));
            }
            let key = self.string()?;
            self.path.push(Step::Key(key));
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value()?;
            if let Some(Step::Key(key)) = self.path.pop() {
                members.push((key, value));
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self) -> Result<Json, SyntaxError> {
        self.pos += 1;
        let mut elements = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(elements));
        }
        loop {
            self.skip_whitespace();
            self.path.push(Step::Index(elements.len()));
            let element = self.value()?;
            self.path.pop();
            elements.push(element);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(elements));
                }
                None => return Err(self.error("EOF while parsing a list")),
                Some(_) => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// Reads a string starting at its opening quote. The text is valid UTF-8 and every byte the
    /// loop stops at is ASCII, so the copied runs are whole characters.
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let bytes = self.text.as_bytes();
        let mut out = String::new();
        let mut run_start = self.pos;
        loop {
            let Some(&byte) = bytes.get(self.pos) else {
                return Err(self.error("EOF while parsing a string"));
            };
            match byte {
                b'"' => {
                    out.push_str(&self.text[run_start..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[run_start..self.pos]);
                    self.pos += 1;
                    let escaped = self.escape()?;
                    out.push(escaped);
                    run_start = self.pos;
                }
                0x00..=0x1f => return Err(self.error("control character in a string")),
                _ => self.pos += 1,
            }
        }
    }

    /// The character after a backslash; `pos` is just past the backslash.
    fn escape(&mut self) -> Result<char, SyntaxError> {
        let Some(byte) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.pos += 1;
        Ok(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => return Err(self.error("invalid escape")),
        })
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if !self.text[self.pos..].starts_with("\\u") {
                    return Err(self.error("lone surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("lone surrogate in a \\u escape"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("lone surrogate in a \\u escape")),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|byte| (byte as char).to_digit(16))
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<Json, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        Ok(Json::Number(self.text[start..self.pos].to_string()))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(members: &[(&str, Json)]) -> Json {
        Json::Object(
            members
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn parses_every_kind_of_value() {
        let number = |text: &str| Json::Number(text.to_string());
        let cases: Vec<(&str, Json)> = vec![
            ("null", Json::Null),
            (" true ", Json::Bool(true)),
            ("false", Json::Bool(false)),
            ("0", number("0")),
            ("-12.5e+3", number("-12.5e+3")),
            ("1E9", number("1E9")),
            (r#""a\"b\\c\/d\n\t""#, Json::String("a\"b\\c/d\n\t".into())),
            (r#""\u00e9\ud83d\ude00""#, Json::String("é😀".into())),
            ("\"héllo\"", Json::String("héllo".into())),
            ("[]", Json::Array(vec![])),
            (
                "[1, \"x\", [null]]",
                Json::Array(vec![
                    number("1"),
                    Json::String("x".into()),
                    Json::Array(vec![Json::Null]),
                ]),
            ),
            ("{}", object(&[])),
            (
                "{\"a\": {\"b\": [true]}, \"c\": 2}",
                object(&[
                    ("a", object(&[("b", Json::Array(vec![Json::Bool(true)]))])),
                    ("c", number("2")),
                ]),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn syntax_errors_name_the_value_being_read() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "(root)", "EOF while parsing a value"),
            ("{not json", "(root)", "key must be a string"),
            ("{\"a\":1", "(root)", "EOF while parsing an object"),
            ("{\"a\" 1}", "a", "expected `:`"),
            ("{\"a\":1 \"b\":2}", "(root)", "expected `,` or `}`"),
            ("{\"a\":{\"b\":[1,2 3]}}", "a.b", "expected `,` or `]`"),
            ("{\"a\":{\"b\":[1,tru]}}", "a.b[1]", "expected a value"),
            ("{\"a\":01}", "(root)", "expected `,` or `}`"),
            ("{\"a\":1.}", "a", "invalid number"),
            ("{\"a\":-}", "a", "invalid number"),
            ("{\"a\":1e}", "a", "invalid number"),
            ("{\"a\":\"x\ny\"}", "a", "control character in a string"),
            ("{\"a\":\"\\q\"}", "a", "invalid escape"),
            ("{\"a\":\"\\u12\"}", "a", "invalid \\u escape"),
            ("{\"a\":\"\\ud800\"}", "a", "lone surrogate in a \\u escape"),
            ("{\"a\":\"\\udc00\"}", "a", "lone surrogate in a \\u escape"),
            ("{\"a\":\"abc", "a", "EOF while parsing a string"),
            ("{} {}", "(root)", "trailing characters after the document"),
            ("[1,2", "(root)", "EOF while parsing a list"),
        ];
        for (text, path, reason) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(
                (error.path.as_str(), error.reason),
                (*path, *reason),
                "{text}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep).unwrap_err().reason, "nested too deeply");
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&fine).is_ok());
    }

    /// Our tree as serde_json's, numbers read from the text we kept; `None` when a number is
    /// beyond f64's range, which serde_json refuses while parsing. sidetrace keeps the text and
    /// leaves the refusal to the field that reads it, which names itself in the error.
    fn as_serde(value: &Json) -> Option<serde_json::Value> {
        Some(match value {
            Json::Null => serde_json::Value::Null,
            Json::Bool(b) => serde_json::Value::Bool(*b),
            // Integers through serde_json (exact); fractions through std's correctly rounded
            // parser, which serde_json matches only with its `float_roundtrip` feature (on in
            // this crate's dev-dependencies, for the documents it parses itself below).
            Json::Number(text) if text.contains(['.', 'e', 'E']) => {
                let number = text.parse::<f64>().expect("number text");
                serde_json::Number::from_f64(number)?.into()
            }
            Json::Number(text) => serde_json::from_str(text).ok()?,
            Json::String(text) => serde_json::Value::String(text.clone()),
            Json::Array(elements) => elements.iter().map(as_serde).collect::<Option<_>>()?,
            Json::Object(members) => serde_json::Value::Object(
                members
                    .iter()
                    .map(|(k, v)| Some((k.clone(), as_serde(v)?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| n.into()),
            any::<u64>().prop_map(|n| n.into()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.into()),
            any::<String>().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn json_like_noise() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        const TOKENS: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\n",
            "\"k\"",
            "\"\"",
            "\"a\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\\\"",
            "\"\u{1}\"",
            "\"é\"",
            "0",
            "01",
            "-",
            "-0",
            "1.5",
            "1.",
            ".5",
            "1e5",
            "1E+2",
            "2e-",
            "1e",
            "true",
            "tru",
            "false",
            "null",
            "nul",
            "1e501",
            "-1e400",
            "\"",
        ];
        proptest::collection::vec(proptest::sample::select(TOKENS), 0..12)
            .prop_map(|tokens| tokens.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Every document serde_json writes, compact or pretty, reads back as the same value.
        #[test]
        fn reads_what_serde_json_writes(value in any_json()) {
            for text in [value.to_string(), serde_json::to_string_pretty(&value).unwrap()] {
                let parsed = parse(&text).map_err(|e| format!("{text}: {e:?}"));
                proptest::prop_assert_eq!(parsed.map(|json| as_serde(&json)), Ok(Some(value.clone())));
            }
        }

        /// On token soup that is often almost JSON it accepts exactly what serde_json accepts,
        /// and never panics.
        #[test]
        fn accepts_what_serde_json_accepts(text in json_like_noise()) {
            let ours = parse(&text).ok().and_then(|json| as_serde(&json));
            let theirs = serde_json::from_str::<serde_json::Value>(&text).ok();
            proptest::prop_assert_eq!(ours, theirs, "{:?}", text);
        }
    }
}
