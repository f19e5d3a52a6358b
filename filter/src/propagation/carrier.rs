//! Header carriers. Names are always lowercase: HTTP/2 and Envoy lowercase them, and every
//! format asks with lowercase names.

/// Read access to request headers.
pub trait Getter {
    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str>;

    /// Every value of `name`, in order (repeated `tracestate` or `baggage` lines).
    fn get_all<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str)) {
        if let Some(value) = self.get(name) {
            visit(value);
        }
    }

    /// Every header, in order.
    fn for_each<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str));

    /// Every header whose name starts with `prefix`, in order: prefix families such as Jaeger's
    /// `uberctx-*`.
    fn for_each_prefixed<'a>(&'a self, prefix: &str, visit: &mut dyn FnMut(&'a str, &'a str)) {
        self.for_each(&mut |name, value| {
            if name.starts_with(prefix) {
                visit(name, value);
            }
        });
    }
}

/// Write access to request headers.
pub trait Setter {
    /// Replaces every value of `name` with `value`.
    fn set(&mut self, name: &str, value: &str);
    fn remove(&mut self, name: &str);
}

/// Headers as an ordered list of pairs: what the proxy returns in one call, and what tests build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    /// Builds from pairs, lowercasing the names as the proxy would.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Headers {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_string()))
                .collect(),
        }
    }
}

impl Getter for Headers {
    fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn get_all<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str)) {
        self.entries
            .iter()
            .filter(|(k, _)| k == name)
            .for_each(|(_, v)| visit(v));
    }

    fn for_each<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str)) {
        self.entries.iter().for_each(|(k, v)| visit(k, v));
    }
}

impl Setter for Headers {
    fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.entries.push((name.to_string(), value.to_string()));
    }

    fn remove(&mut self, name: &str) {
        self.entries.retain(|(k, _)| k != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_every_value_and_lowercases_on_build() {
        let mut headers = Headers::from_pairs([("TraceState", "a=1"), ("tracestate", "b=2")]);
        let mut seen = Vec::new();
        headers.get_all("tracestate", &mut |v| seen.push(v.to_string()));
        assert_eq!(seen, ["a=1", "b=2"]);
        headers.set("tracestate", "c=3");
        assert_eq!(
            headers.entries,
            vec![("tracestate".to_string(), "c=3".to_string())]
        );
        headers.remove("tracestate");
        assert_eq!(headers.get("tracestate"), None);
    }
}
