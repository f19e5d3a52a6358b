//! Turns what the sidecar saw of one HTTP exchange into span name, attributes and status, using
//! the stable OTel HTTP semantic conventions. Pure: the glue collects the facts, this decides.

use crate::config::HeaderTag;
use crate::propagation::Getter;
use crate::span::{http_span_status, Attribute, AttributeValue, SpanKind, StatusCode};
use std::borrow::Cow;

/// Facts about one finished exchange. Strings borrow from the request headers kept since the
/// start of the stream and from properties read at the end.
pub struct Exchange<'a> {
    pub kind: SpanKind,
    /// Read for the configured header tags; every other header the span needs is in `fields`.
    pub request: &'a dyn Getter,
    pub fields: RequestFields<'a>,
    pub route_name: Option<&'a str>,
    /// `request.protocol`: "HTTP/1.1", "HTTP/2", "HTTP/3".
    pub protocol: Option<&'a str>,
    pub status_code: Option<u32>,
    pub grpc_status: Option<u32>,
    /// Envoy's short response-flag codes, comma-joined ("UF,URX").
    pub response_flags: &'a str,
    pub downstream_peer: Option<&'a str>,
    pub upstream_address: Option<&'a str>,
    pub upstream_cluster: Option<&'a str>,
    pub request_body_size: Option<i64>,
    pub response_body_size: Option<i64>,
}

/// What the configuration adds to every span.
pub struct SpanDecorations<'a> {
    pub record_query: bool,
    pub fixed_tags: &'a [(String, String)],
    pub header_tags: &'a [HeaderTag],
    /// `(attribute name, value)` pairs taken from incoming baggage for the configured keys only.
    pub baggage: &'a [(&'a str, &'a str)],
}

const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The request headers a span's attributes come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFields<'a> {
    pub method: Option<&'a str>,
    /// `:path`: the request target, query string included.
    pub target: Option<&'a str>,
    pub scheme: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub forwarded_for: Option<&'a str>,
    pub content_type: Option<&'a str>,
}

impl<'a> RequestFields<'a> {
    /// The first value of each, as `Getter::get` gives it, in one pass over the headers.
    pub fn read(request: &'a (impl Getter + ?Sized)) -> Self {
        let mut fields = RequestFields::default();
        request.for_each(&mut |name, value| {
            let slot = match name {
                ":method" => &mut fields.method,
                ":path" => &mut fields.target,
                ":scheme" => &mut fields.scheme,
                ":authority" => &mut fields.authority,
                "user-agent" => &mut fields.user_agent,
                "x-request-id" => &mut fields.request_id,
                "x-forwarded-for" => &mut fields.forwarded_for,
                "content-type" => &mut fields.content_type,
                _ => return,
            };
            slot.get_or_insert(value);
        });
        fields
    }

    /// gRPC requests are the only ones whose `grpc-status` means anything.
    pub fn is_grpc(&self) -> bool {
        self.content_type
            .is_some_and(|ct| ct.starts_with("application/grpc"))
    }
}

/// A request target's path: what comes before its query string or fragment.
pub fn path_of(target: &str) -> &str {
    match target.bytes().position(|b| b == b'?' || b == b'#') {
        Some(end) => &target[..end],
        None => target,
    }
}

/// Envoy's response flags explain failures: an exchange with no status, or 4xx/5xx, is worth
/// the lookup; a 1xx-3xx response carries none that a trace reader needs.
pub fn flags_worth_reading(status_code: Option<u32>) -> bool {
    status_code.is_none_or(|code| code == 0 || code >= 400)
}

/// A response's `:status` value: three digits, as HTTP/1.1 and HTTP/2 both require.
pub fn parse_status(value: &[u8]) -> Option<u32> {
    match value {
        [a, b, c] if value.iter().all(u8::is_ascii_digit) => {
            Some(u32::from(a - b'0') * 100 + u32::from(b - b'0') * 10 + u32::from(c - b'0'))
        }
        _ => None,
    }
}

impl<'a> Exchange<'a> {
    pub fn method(&self) -> &'a str {
        self.fields.method.unwrap_or("GET")
    }

    /// The request target without its query string.
    pub fn path(&self) -> &'a str {
        path_of(self.fields.target.unwrap_or("/"))
    }

    fn query(&self) -> Option<&'a str> {
        let target = self.fields.target?;
        let (_, query) = target.split_once('?')?;
        Some(query.split('#').next().unwrap_or(query)).filter(|q| !q.is_empty())
    }

    fn is_grpc(&self) -> bool {
        self.fields.is_grpc()
    }

    /// OTel status for this exchange: never Ok, Error by the server/client rules.
    pub fn status(&self) -> (StatusCode, Cow<'static, str>) {
        let grpc = if self.is_grpc() {
            self.grpc_status
        } else {
            None
        };
        http_span_status(
            self.kind,
            self.status_code.filter(|c| *c > 0),
            grpc,
            self.response_flags,
        )
    }

    /// Appends every attribute of the span to `out`.
    pub fn attributes(&self, decorations: &SpanDecorations<'a>, out: &mut Vec<Attribute<'a>>) {
        let method = self.method();
        if KNOWN_METHODS.contains(&method) {
            push_str(out, "http.request.method", method);
        } else {
            push_str(out, "http.request.method", "_OTHER");
            push_str(out, "http.request.method_original", method);
        }
        push_str(out, "url.path", self.path());
        if decorations.record_query {
            if let Some(query) = self.query() {
                push_str(out, "url.query", query);
            }
        }
        if let Some(scheme) = self.fields.scheme {
            push_str(out, "url.scheme", scheme);
        }
        if let Some(authority) = self.fields.authority {
            let (host, port) = split_host_port(authority);
            push_str(out, "server.address", host);
            if let Some(port) = port {
                out.push(Attribute {
                    key: "server.port",
                    value: AttributeValue::Int(port),
                });
            }
        }
        if let Some(code) = self.status_code.filter(|c| *c > 0) {
            out.push(Attribute {
                key: "http.response.status_code",
                value: AttributeValue::Int(code as i64),
            });
        }
        if let Some(version) = self.protocol.and_then(protocol_version) {
            push_str(out, "network.protocol.version", version);
        }
        match self.kind {
            SpanKind::Server => {
                let peer = self.downstream_peer.map(split_host_port);
                let client = self
                    .fields
                    .forwarded_for
                    .and_then(|list| list.split(',').next())
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .or(peer.map(|(address, _)| address));
                if let Some(client) = client {
                    push_str(out, "client.address", client);
                }
                if let Some(peer) = peer {
                    push_peer(out, peer);
                }
            }
            SpanKind::Client => {
                if let Some(peer) = self.upstream_address {
                    push_peer(out, split_host_port(peer));
                }
            }
        }
        if let Some(agent) = self.fields.user_agent {
            push_str(out, "user_agent.original", agent);
        }
        if let Some(size) = self.request_body_size.filter(|s| *s > 0) {
            out.push(Attribute {
                key: "http.request.body.size",
                value: AttributeValue::Int(size),
            });
        }
        if let Some(size) = self.response_body_size.filter(|s| *s >= 0) {
            out.push(Attribute {
                key: "http.response.body.size",
                value: AttributeValue::Int(size),
            });
        }
        if let Some(request_id) = self.fields.request_id {
            push_str(out, "http.request.header.x-request-id", request_id);
        }
        if self.is_grpc() {
            if let Some(status) = self.grpc_status {
                out.push(Attribute {
                    key: "rpc.system",
                    value: AttributeValue::Str("grpc"),
                });
                out.push(Attribute {
                    key: "rpc.grpc.status_code",
                    value: AttributeValue::Int(status as i64),
                });
            }
        }
        if !self.response_flags.is_empty() {
            push_str(out, "envoy.response_flags", self.response_flags);
        }
        if let Some(cluster) = self.upstream_cluster.filter(|c| !c.is_empty()) {
            push_str(out, "envoy.upstream_cluster", cluster);
        }
        if let Some(upstream) = self.upstream_address.filter(|a| !a.is_empty()) {
            push_str(out, "upstream.address", upstream);
        }
        for (tag, value) in decorations.fixed_tags {
            push_str(out, tag, value);
        }
        for tag in decorations.header_tags {
            // Only the one configured header is read: a tag can never expose any other header.
            if let Some(value) = self
                .request
                .get(&tag.header)
                .or(tag.default_value.as_deref())
            {
                push_str(out, &tag.tag, value);
            }
        }
        for (name, value) in decorations.baggage {
            push_str(out, name, value);
        }
    }
}

fn push_str<'a>(out: &mut Vec<Attribute<'a>>, key: &'a str, value: &'a str) {
    out.push(Attribute {
        key,
        value: AttributeValue::Str(value),
    });
}

fn push_peer<'a>(out: &mut Vec<Attribute<'a>>, (address, port): (&'a str, Option<i64>)) {
    push_str(out, "network.peer.address", address);
    if let Some(port) = port {
        out.push(Attribute {
            key: "network.peer.port",
            value: AttributeValue::Int(port),
        });
    }
}

/// Splits `host:port`, `[v6]:port`, or a bare host.
pub fn split_host_port(authority: &str) -> (&str, Option<i64>) {
    if let Some(bracketed) = authority.strip_prefix('[') {
        return match bracketed.bytes().position(|b| b == b']') {
            Some(end) => (
                &bracketed[..end],
                bracketed[end + 1..].strip_prefix(':').and_then(parse_port),
            ),
            None => (authority, None),
        };
    }
    let Some(colon) = authority.bytes().position(|b| b == b':') else {
        return (authority, None);
    };
    // parse_port refuses a second colon: more than one and no brackets is a bare IPv6
    // address, with no port.
    match parse_port(&authority[colon + 1..]) {
        Some(port) => (&authority[..colon], Some(port)),
        None => (authority, None),
    }
}

/// A TCP port: 1 to 5 decimal digits, at most 65535.
fn parse_port(digits: &str) -> Option<i64> {
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    let mut port = 0;
    for digit in digits.bytes() {
        if !digit.is_ascii_digit() {
            return None;
        }
        port = port * 10 + i64::from(digit - b'0');
    }
    (port <= i64::from(u16::MAX)).then_some(port)
}

fn protocol_version(protocol: &str) -> Option<&str> {
    match protocol {
        "HTTP/1.0" => Some("1.0"),
        "HTTP/1.1" => Some("1.1"),
        "HTTP/2" => Some("2"),
        "HTTP/3" => Some("3"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::Headers;

    #[test]
    fn request_fields_take_the_first_value_of_each_header() {
        let request = Headers::from_pairs([
            ("x-request-id", "first"),
            ("x-request-id", "second"),
            ("cookie", "c"),
            (":method", "GET"),
            (":path", "/a?b"),
            ("content-type", "application/grpc"),
        ]);
        let fields = RequestFields::read(&request);
        assert_eq!(fields.request_id, Some("first"));
        assert_eq!(fields.method, Some("GET"));
        assert_eq!(fields.target, Some("/a?b"));
        assert!(fields.is_grpc());
        assert_eq!(fields.authority, None);
    }

    #[test]
    fn status_is_three_digits() {
        let cases: [(&[u8], Option<u32>); 7] = [
            (b"200", Some(200)),
            (b"503", Some(503)),
            (b"099", Some(99)),
            (b"20", None),
            (b"2000", None),
            (b"2x0", None),
            (b"", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_status(value), expected, "{value:?}");
        }
    }

    #[test]
    fn reads_only_the_properties_a_span_will_carry() {
        let flags_cases = [
            (None, true),
            (Some(0), true),
            (Some(200), false),
            (Some(304), false),
            (Some(404), true),
            (Some(503), true),
        ];
        for (status, expected) in flags_cases {
            assert_eq!(flags_worth_reading(status), expected, "{status:?}");
        }
        let grpc_cases = [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/json", false),
        ];
        for (content_type, expected) in grpc_cases {
            let headers = Headers::from_pairs([("content-type", content_type)]);
            assert_eq!(
                RequestFields::read(&headers).is_grpc(),
                expected,
                "{content_type}"
            );
        }
        assert!(!RequestFields::read(&Headers::new()).is_grpc());
    }

    fn exchange(kind: SpanKind, request: &Headers, status: Option<u32>) -> Exchange<'_> {
        Exchange {
            kind,
            request,
            fields: RequestFields::read(request),
            route_name: None,
            protocol: Some("HTTP/1.1"),
            status_code: status,
            grpc_status: None,
            response_flags: "",
            downstream_peer: Some("10.0.0.7:51234"),
            upstream_address: Some("10.0.0.9:8080"),
            upstream_cluster: Some("outbound|8080||payments"),
            request_body_size: Some(0),
            response_body_size: Some(42),
        }
    }

    fn find<'a>(attrs: &'a [Attribute<'a>], key: &str) -> Option<&'a AttributeValue<'a>> {
        attrs.iter().find(|a| a.key == key).map(|a| &a.value)
    }

    fn request() -> Headers {
        Headers::from_pairs([
            (":method", "POST"),
            (":path", "/orders/123?debug=1"),
            (":scheme", "http"),
            (":authority", "checkout:8080"),
            ("user-agent", "curl/8"),
            ("x-request-id", "req-1"),
            ("x-user-id", "u-9"),
            ("cookie", "secret"),
        ])
    }

    #[test]
    fn server_span_attributes_follow_semconv() {
        let request = request();
        let ex = exchange(SpanKind::Server, &request, Some(201));
        let tags = vec![HeaderTag {
            tag: "user".into(),
            header: "x-user-id".into(),
            default_value: None,
        }];
        let fixed = vec![("env".to_string(), "prod".to_string())];
        let decorations = SpanDecorations {
            record_query: false,
            fixed_tags: &fixed,
            header_tags: &tags,
            baggage: &[],
        };
        let mut attrs = Vec::new();
        ex.attributes(&decorations, &mut attrs);
        assert_eq!(
            find(&attrs, "http.request.method"),
            Some(&AttributeValue::Str("POST"))
        );
        assert_eq!(
            find(&attrs, "url.path"),
            Some(&AttributeValue::Str("/orders/123"))
        );
        assert_eq!(find(&attrs, "url.query"), None);
        assert_eq!(
            find(&attrs, "server.address"),
            Some(&AttributeValue::Str("checkout"))
        );
        assert_eq!(
            find(&attrs, "server.port"),
            Some(&AttributeValue::Int(8080))
        );
        assert_eq!(
            find(&attrs, "http.response.status_code"),
            Some(&AttributeValue::Int(201))
        );
        assert_eq!(
            find(&attrs, "client.address"),
            Some(&AttributeValue::Str("10.0.0.7"))
        );
        assert_eq!(
            find(&attrs, "network.peer.port"),
            Some(&AttributeValue::Int(51234))
        );
        assert_eq!(
            find(&attrs, "network.protocol.version"),
            Some(&AttributeValue::Str("1.1"))
        );
        assert_eq!(
            find(&attrs, "http.request.header.x-request-id"),
            Some(&AttributeValue::Str("req-1"))
        );
        assert_eq!(
            find(&attrs, "http.response.body.size"),
            Some(&AttributeValue::Int(42))
        );
        assert_eq!(find(&attrs, "env"), Some(&AttributeValue::Str("prod")));
        assert_eq!(find(&attrs, "user"), Some(&AttributeValue::Str("u-9")));
        assert!(attrs
            .iter()
            .all(|a| a.value != AttributeValue::Str("secret")));
    }

    #[test]
    fn query_only_when_configured_and_unknown_methods_are_other() {
        let mut request = request();
        crate::propagation::Setter::set(&mut request, ":method", "PURGE");
        let ex = exchange(SpanKind::Client, &request, Some(200));
        let tags = vec![HeaderTag {
            tag: "user".into(),
            header: "x-absent".into(),
            default_value: Some("anonymous".into()),
        }];
        let decorations = SpanDecorations {
            record_query: true,
            fixed_tags: &[],
            header_tags: &tags,
            baggage: &[],
        };
        let mut attrs = Vec::new();
        ex.attributes(&decorations, &mut attrs);
        assert_eq!(
            find(&attrs, "url.query"),
            Some(&AttributeValue::Str("debug=1"))
        );
        assert_eq!(
            find(&attrs, "http.request.method"),
            Some(&AttributeValue::Str("_OTHER"))
        );
        assert_eq!(
            find(&attrs, "http.request.method_original"),
            Some(&AttributeValue::Str("PURGE"))
        );
        assert_eq!(
            find(&attrs, "network.peer.address"),
            Some(&AttributeValue::Str("10.0.0.9"))
        );
        assert_eq!(
            find(&attrs, "user"),
            Some(&AttributeValue::Str("anonymous"))
        );
        assert_eq!(find(&attrs, "client.address"), None);
    }

    #[test]
    fn request_fields_are_each_header_first_value_as_a_lookup_gives_it() {
        let request = Headers::from_pairs([
            (":method", "POST"),
            (":path", "/a?b=1#c"),
            (":scheme", "https"),
            (":authority", "shop:8443"),
            ("user-agent", "curl/8"),
            ("x-request-id", "r-1"),
            ("x-forwarded-for", "1.2.3.4, 5.6.7.8"),
            ("x-forwarded-for", "9.9.9.9"),
            ("content-type", "application/grpc"),
            ("x-other", "ignored"),
        ]);
        let fields = RequestFields::read(&request);
        let lookups = [
            (":method", fields.method),
            (":path", fields.target),
            (":scheme", fields.scheme),
            (":authority", fields.authority),
            ("user-agent", fields.user_agent),
            ("x-request-id", fields.request_id),
            ("x-forwarded-for", fields.forwarded_for),
            ("content-type", fields.content_type),
        ];
        for (name, read) in lookups {
            assert_eq!(read, request.get(name), "{name}");
            assert!(read.is_some(), "{name}");
        }
        assert_eq!(
            RequestFields::read(&Headers::new()),
            RequestFields::default()
        );
        let ex = exchange(SpanKind::Server, &request, Some(200));
        assert_eq!(ex.path(), "/a");
        assert_eq!(ex.method(), "POST");
    }

    #[test]
    fn status_follows_kind() {
        let request = request();
        let cases = [
            (SpanKind::Server, Some(503), StatusCode::Error),
            (SpanKind::Server, Some(404), StatusCode::Unset),
            (SpanKind::Client, Some(404), StatusCode::Error),
            (SpanKind::Client, Some(200), StatusCode::Unset),
            (SpanKind::Server, None, StatusCode::Error),
            (SpanKind::Server, Some(0), StatusCode::Error),
        ];
        for (kind, code, expected) in cases {
            let (status, _) = exchange(kind, &request, code).status();
            assert_eq!(status, expected, "{kind:?} {code:?}");
        }
    }

    #[test]
    fn splits_authorities() {
        assert_eq!(split_host_port("a:80"), ("a", Some(80)));
        assert_eq!(split_host_port("a"), ("a", None));
        assert_eq!(split_host_port("[::1]:9"), ("::1", Some(9)));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("a:notaport"), ("a:notaport", None));
        assert_eq!(split_host_port("a:65535"), ("a", Some(65535)));
        assert_eq!(split_host_port("a:65536"), ("a:65536", None));
        assert_eq!(split_host_port("a:"), ("a:", None));
        assert_eq!(split_host_port("10.0.0.7:51234"), ("10.0.0.7", Some(51234)));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("[::1"), ("[::1", None));
        assert_eq!(split_host_port("[::1]x"), ("::1", None));
        assert_eq!(split_host_port("[::1]:x"), ("::1", None));
        assert_eq!(split_host_port(""), ("", None));
        assert_eq!(split_host_port(":80"), ("", Some(80)));
        assert_eq!(split_host_port("a:b:80"), ("a:b:80", None));
    }
}
