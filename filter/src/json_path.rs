//! Names the field a serde_json error points at (`collector.timeoutMs`, `propagation.inject[1]`)
//! from the error's line and column. Walking the text again after a failure costs nothing on the
//! happy path and keeps path-tracking deserializer wrappers, and their code size, out of the
//! module.

enum Frame {
    /// The key most recently read in this object.
    Object(Option<String>),
    /// How many elements of this array have started.
    Array(usize),
}

/// The path of the value being read at 1-based `line` and `column` (serde_json's position:
/// the last byte it consumed), or `(root)` when that is the document itself.
pub fn path_at(json: &[u8], line: usize, column: usize) -> String {
    let end = byte_offset(json, line, column).min(json.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut expecting_key = false;
    let mut i = 0;
    while i < end {
        let byte = json[i];
        match byte {
            b'{' => {
                start_value(&mut stack, expecting_key);
                stack.push(Frame::Object(None));
                expecting_key = true;
            }
            b'[' => {
                start_value(&mut stack, expecting_key);
                stack.push(Frame::Array(0));
                expecting_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expecting_key = false;
            }
            b',' => {
                // The previous member is done: its key no longer names where we are.
                if let Some(Frame::Object(key)) = stack.last_mut() {
                    *key = None;
                    expecting_key = true;
                }
            }
            b'"' => {
                let (text, next) = read_string(json, i + 1);
                if expecting_key {
                    if let Some(Frame::Object(key)) = stack.last_mut() {
                        *key = Some(text);
                    }
                    expecting_key = false;
                } else {
                    start_value(&mut stack, false);
                }
                i = next;
                continue;
            }
            b':' => expecting_key = false,
            _ if byte.is_ascii_whitespace() => {}
            _ => {
                start_value(&mut stack, expecting_key);
                // A number, `true`, `false` or `null`: skip to its end.
                while i + 1 < end
                    && !matches!(
                        json[i + 1],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
                    )
                {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    render(&stack)
}

/// Counts an array element when a value starts inside an array; object values are named by their key.
fn start_value(stack: &mut [Frame], expecting_key: bool) {
    if let (false, Some(Frame::Array(started))) = (expecting_key, stack.last_mut()) {
        *started += 1;
    }
}

fn byte_offset(json: &[u8], line: usize, column: usize) -> usize {
    let mut line_start = 0;
    for _ in 1..line {
        match json[line_start..].iter().position(|&b| b == b'\n') {
            Some(newline) => line_start += newline + 1,
            None => return json.len(),
        }
    }
    line_start + column
}

/// The string's text (escapes kept as written: keys are plain ASCII) and the offset past its quote.
fn read_string(json: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < json.len() && json[i] != b'"' {
        i += if json[i] == b'\\' { 2 } else { 1 };
    }
    let end = i.min(json.len());
    (
        String::from_utf8_lossy(&json[start..end]).into_owned(),
        end + 1,
    )
}

fn render(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(0) => {}
            Frame::Array(started) => {
                path.push('[');
                path.push_str(&(started - 1).to_string());
                path.push(']');
            }
        }
    }
    if path.is_empty() {
        path.push_str("(root)");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path serde_json's own error position leads to.
    fn path_of_error<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        let error = serde_json::from_str::<T>(json).expect_err(json);
        path_at(json.as_bytes(), error.line(), error.column())
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
        #[serde(default)]
        size: u32,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        numbers: Vec<u8>,
        #[serde(default)]
        ratio: f64,
    }

    #[test]
    fn names_the_field_serde_json_stopped_at() {
        let cases: &[(&str, &str)] = &[
            (r#"{}"#, "(root)"),
            (r#"{"inner":{}}"#, "inner"),
            (r#"{"inner":{"name":"a","extra":1}}"#, "inner.extra"),
            (r#"{"inner":{"name":7}}"#, "inner.name"),
            (r#"{"inner":{"name":"a","size":-1}}"#, "inner.size"),
            (r#"{"inner":{"name":"a"},"ratio":"x"}"#, "ratio"),
            (
                r#"{"inner":{"name":"a"},"numbers":[1,2,300]}"#,
                "numbers[2]",
            ),
            (
                r#"{"inner":{"name":"a"},"list":[{"name":"b"},{"nam":"c"}]}"#,
                "list[1].nam",
            ),
            (
                r#"{"inner":{"name":"a"},"list":[{"name":"b"},{}]}"#,
                "list[1]",
            ),
            (
                "{\n  \"inner\": {\n    \"name\": \"a\",\n    \"size\": true\n  }\n}",
                "inner.size",
            ),
            (r#"{"inner":{"name":"a\"b","size":"big"}}"#, "inner.size"),
            (r#"{"inner":{"name":"a"},"#, "(root)"),
            // serde reads a struct from a sequence too: element 0 is the bad one.
            (r#"[1]"#, "[0]"),
        ];
        for (json, expected) in cases {
            assert_eq!(path_of_error::<Outer>(json), *expected, "{json}");
        }
    }

    #[test]
    fn positions_past_the_text_do_not_panic() {
        assert_eq!(path_at(b"{\"a\":{", 9, 99), "a");
        assert_eq!(path_at(b"", 1, 5), "(root)");
        assert_eq!(path_at(b"\"unterminated", 1, 40), "(root)");
    }
}
