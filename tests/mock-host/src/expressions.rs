//! Envoy's `expr_create` / `expr_evaluate` foreign functions, for the CEL the module writes:
//! lists, attributes, integer and `''` constants, `has(attr)`, `attr == int` and
//! `cond ? a : b`. Anything else is refused at create, as Envoy refuses what it cannot parse.
//! Attributes are looked up like `proxy_get_property`; a missing one fails the evaluation, as in
//! Envoy, unless `has()` or an untaken branch keeps it from being looked up.

type Attributes<'a> = &'a dyn Fn(&str) -> Option<Vec<u8>>;

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Attribute(String),
    Int(i64),
    Empty,
    Has(String),
    Equals(String, i64),
    List(Vec<Expr>),
    Choice(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bytes(Vec<u8>),
    Bool(bool),
    List(Vec<Vec<u8>>),
}

fn tokens(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' => {
                chars.next();
            }
            '[' | ']' | '(' | ')' | ',' | '?' | ':' => {
                out.push(c.to_string());
                chars.next();
            }
            '=' => {
                chars.next();
                (chars.next()? == '=').then_some(())?;
                out.push("==".into());
            }
            '\'' => {
                chars.next();
                (chars.next()? == '\'').then_some(())?;
                out.push("''".into());
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(word);
            }
            _ => return None,
        }
    }
    Some(out)
}

struct Parser {
    tokens: Vec<String>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, token: &str) -> Option<()> {
        (self.next()? == token).then_some(())
    }

    fn expr(&mut self) -> Option<Expr> {
        let condition = self.term()?;
        if self.peek() != Some("?") {
            return Some(condition);
        }
        self.next();
        let when_true = self.expr()?;
        self.expect(":")?;
        let when_false = self.expr()?;
        Some(Expr::Choice(
            Box::new(condition),
            Box::new(when_true),
            Box::new(when_false),
        ))
    }

    fn term(&mut self) -> Option<Expr> {
        let token = self.next()?;
        match token.as_str() {
            "[" => {
                let mut items = Vec::new();
                if self.peek() == Some("]") {
                    self.next();
                    return Some(Expr::List(items));
                }
                loop {
                    items.push(self.expr()?);
                    match self.next()?.as_str() {
                        "," => continue,
                        "]" => return Some(Expr::List(items)),
                        _ => return None,
                    }
                }
            }
            "(" => {
                let inner = self.expr()?;
                self.expect(")")?;
                Some(inner)
            }
            "''" => Some(Expr::Empty),
            "has" => {
                self.expect("(")?;
                let attribute = self.next().filter(|a| is_attribute(a))?;
                self.expect(")")?;
                Some(Expr::Has(attribute))
            }
            word => {
                if let Ok(number) = word.parse::<i64>() {
                    return Some(Expr::Int(number));
                }
                if !is_attribute(word) {
                    return None;
                }
                if self.peek() == Some("==") {
                    self.next();
                    let number = self.next()?.parse::<i64>().ok()?;
                    return Some(Expr::Equals(word.to_string(), number));
                }
                Some(Expr::Attribute(word.to_string()))
            }
        }
    }
}

fn is_attribute(text: &str) -> bool {
    text.contains('.')
        && text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

fn parse(text: &str) -> Option<Expr> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
    };
    let expr = parser.expr()?;
    (parser.at == parser.tokens.len()).then_some(expr)
}

fn eval(expr: &Expr, attributes: Attributes) -> Option<Value> {
    Some(match expr {
        Expr::Attribute(name) => Value::Bytes(attributes(name)?),
        Expr::Int(number) => Value::Bytes(number.to_le_bytes().to_vec()),
        Expr::Empty => Value::Bytes(Vec::new()),
        Expr::Has(name) => Value::Bool(attributes(name).is_some()),
        Expr::Equals(name, number) => {
            let bytes: [u8; 8] = attributes(name)?.try_into().ok()?;
            Value::Bool(i64::from_le_bytes(bytes) == *number)
        }
        Expr::List(items) => Value::List(
            items
                .iter()
                .map(|item| match eval(item, attributes)? {
                    Value::Bytes(bytes) => Some(bytes),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        Expr::Choice(condition, when_true, when_false) => match eval(condition, attributes)? {
            Value::Bool(true) => eval(when_true, attributes)?,
            Value::Bool(false) => eval(when_false, attributes)?,
            _ => return None,
        },
    })
}

/// Whether `text` is CEL this evaluator understands.
pub fn parses(text: &str) -> bool {
    parse(text).is_some()
}

/// The value serialized as Envoy hands it over: a list as header-map pairs whose names are the
/// elements; `None` when the evaluation fails (a missing attribute) or is not a list.
pub fn evaluate(text: &str, attributes: Attributes) -> Option<Vec<u8>> {
    let Value::List(elements) = eval(&parse(text)?, attributes)? else {
        return None;
    };
    let pairs: Vec<(Vec<u8>, &[u8])> = elements.into_iter().map(|e| (e, &b""[..])).collect();
    Some(crate::state::serialize_map(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(name: &str) -> Option<Vec<u8>> {
        match name {
            "request.protocol" => Some(b"HTTP/2".to_vec()),
            "xds.listener_direction" => Some(2i64.to_le_bytes().to_vec()),
            _ => None,
        }
    }

    #[test]
    fn understands_the_modules_forms_only() {
        assert!(parses("[response.code, xds.route_name]"));
        assert!(parses(
            "xds.listener_direction == 2 ? (has(upstream.address) ? [2, upstream.address] : \
             [2, '', has(xds.cluster_name) ? xds.cluster_name : '']) : [1, source.address]"
        ));
        assert!(!parses("[size(request.protocol)]"));
        assert!(!parses("[request.protocol"));
        assert!(!parses("[a.b] [c.d]"));
    }

    #[test]
    fn evaluates_like_envoy() {
        let answer = evaluate(
            "xds.listener_direction == 2 ? [2, request.protocol, has(a.b) ? a.b : ''] : [1, a.b]",
            &attributes,
        )
        .unwrap();
        assert_eq!(answer[0..4], 3u32.to_le_bytes());
        assert!(answer.ends_with(b"HTTP/2\0\0\0\0"));
        assert_eq!(
            evaluate("[request.protocol, response.code]", &attributes),
            None
        );
        assert_eq!(
            evaluate("request.protocol", &attributes),
            None,
            "not a list"
        );
    }
}
