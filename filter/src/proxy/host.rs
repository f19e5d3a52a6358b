//! What the filter asks of Envoy, over the SDK's host calls: the request's headers as a
//! carrier the tracer reads and writes, and the facts a span records once its stream is over.

use crate::propagation::{Getter, HeaderBlock, Setter};
use crate::span::facts::{expression, FactsQuery, SpanFacts};
use crate::span::resource::NodeInfo;
use crate::span::SpanKind;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use std::borrow::Cow;
use std::time::UNIX_EPOCH;

/// The request's headers as this filter has read them, written back to Envoy through it.
pub struct RequestHeaders {
    read: HeaderBlock,
}

impl RequestHeaders {
    /// Every header of the request, in one host call: list headers such as `tracestate` and
    /// `baggage` may come in several lines, and only the whole map shows them all.
    pub fn read() -> RequestHeaders {
        RequestHeaders {
            read: HeaderBlock::parse(super::header_map::request_header_pairs()),
        }
    }

    /// How many of the request's headers were not text.
    pub fn unreadable(&self) -> u32 {
        self.read.unreadable().len() as u32
    }

    /// Whether the request may hold `name` although it was not read as text.
    fn holds_unreadable(&self, name: &str) -> bool {
        self.read.unreadable().iter().any(|held| held == name)
    }

    /// The headers as read, before this filter wrote any.
    pub fn into_block(self) -> HeaderBlock {
        self.read
    }
}

impl Getter for RequestHeaders {
    fn get(&self, name: &str) -> Option<&str> {
        self.read.get(name)
    }

    fn get_all<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a str)) {
        self.read.get_all(name, visit)
    }

    fn for_each<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str)) {
        self.read.for_each(visit)
    }

    fn for_each_prefixed<'a>(&'a self, prefix: &str, visit: &mut dyn FnMut(&'a str, &'a str)) {
        self.read.for_each_prefixed(prefix, visit)
    }
}

impl Setter for RequestHeaders {
    /// A header that already holds exactly `value` is left alone: a forwarded context is
    /// mostly written as it came. One the request lacks is added, which needs no search. What
    /// is read back is the request as it came: a format's headers are written once.
    fn set(&mut self, name: &str, value: &str) {
        let mut held = 0;
        let mut same = true;
        self.read.get_all(name, &mut |existing| {
            held += 1;
            // From the end: a context written anew differs from the one read in its span id,
            // near the end, while its trace id at the front is the same.
            same &= existing.len() == value.len() && existing.bytes().rev().eq(value.bytes().rev());
        });
        match (held, same) {
            (1, true) => {}
            (0, _) if !self.holds_unreadable(name) => {
                let _ = hostcalls::add_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    name,
                    value.as_bytes(),
                );
            }
            _ => {
                let _ = hostcalls::set_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    name,
                    Some(value.as_bytes()),
                );
            }
        }
    }

    fn remove(&mut self, name: &str) {
        if self.read.get(name).is_none() && !self.holds_unreadable(name) {
            return;
        }
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
    }
}

/// The response's `:status`, when the upstream (or Envoy) answered.
pub fn response_status() -> Option<u32> {
    let value = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status").ok()??;
    crate::span::http::parse_status(&value)
}

pub fn now_unix_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|now| now.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos() as u64)
}

fn property_bytes(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

pub fn property_string(path: &[&str]) -> Option<String> {
    property_bytes(path)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| !text.is_empty())
}

/// Integer attributes arrive as 8 little-endian bytes.
pub fn property_int(path: &[&str]) -> Option<i64> {
    let bytes = property_bytes(path)?;
    Some(i64::from_le_bytes(bytes.as_slice().try_into().ok()?))
}

/// Envoy's `xds.listener_direction`: 1 inbound, 2 outbound, 0 unspecified. Read per stream:
/// one filter configuration (Istio's ECDS) can serve listeners of both directions.
pub fn listener_kind() -> Option<SpanKind> {
    match property_int(&["xds", "listener_direction"]) {
        Some(1) => Some(SpanKind::Server),
        Some(2) => Some(SpanKind::Client),
        _ => None,
    }
}

/// The Istio node metadata the resource attributes name.
pub fn node_info() -> NodeInfo {
    let meta = |key: &str| property_string(&["xds", "node", "metadata", key]);
    let label_keys = [
        "service.istio.io/canonical-name",
        "service.istio.io/canonical-revision",
        "app",
        "version",
    ];
    let labels = label_keys
        .iter()
        .filter_map(|key| {
            property_string(&["xds", "node", "metadata", "LABELS", key])
                .map(|value| (key.to_string(), value))
        })
        .collect();
    NodeInfo {
        name: meta("NAME"),
        namespace: meta("NAMESPACE"),
        workload_name: meta("WORKLOAD_NAME"),
        cluster_id: meta("CLUSTER_ID"),
        mesh_id: meta("MESH_ID"),
        labels,
    }
}

/// Trace id, span id and decision as filter state, for access logs:
/// `%FILTER_STATE(wasm.sidetrace.trace_id:PLAIN)%` and friends.
pub fn publish_filter_state(trace_id: &[u8], span_id: &[u8], sampled: bool) {
    let _ = hostcalls::set_property(vec!["sidetrace.trace_id"], Some(trace_id));
    let _ = hostcalls::set_property(vec!["sidetrace.span_id"], Some(span_id));
    let sampled: &[u8] = if sampled { b"1" } else { b"0" };
    let _ = hostcalls::set_property(vec!["sidetrace.sampled"], Some(sampled));
}

/// The CEL expressions (Envoy's `expr_create` foreign function) that read a finished span's
/// facts in one host call, one per `FactsQuery::all`; compiled once per plugin.
pub struct FactsExpressions {
    tokens: Option<[u32; 6]>,
}

fn foreign_call(name: &str, arguments: &[u8]) -> Option<Vec<u8>> {
    hostcalls::call_foreign_function(name, Some(arguments))
        .ok()
        .flatten()
}

fn expression_delete(token: u32) {
    foreign_call("expr_delete", &token.to_le_bytes());
}

impl FactsExpressions {
    /// Every query's expression, or none: a host that cannot compile one cannot be relied on
    /// for the others, and the facts are then read one attribute at a time.
    pub fn compile(body_sizes: bool) -> FactsExpressions {
        let mut tokens = [0; 6];
        for query in FactsQuery::all(body_sizes) {
            let token = foreign_call("expr_create", expression(&query).as_bytes())
                .and_then(|token| Some(u32::from_le_bytes(token.as_slice().try_into().ok()?)));
            match token {
                Some(token) => tokens[query.index()] = token,
                None => {
                    tokens[..query.index()]
                        .iter()
                        .for_each(|token| expression_delete(*token));
                    log::info!(
                        "sidetrace: the host compiles no CEL expressions; \
                         span facts are read one attribute at a time"
                    );
                    return FactsExpressions { tokens: None };
                }
            }
        }
        FactsExpressions {
            tokens: Some(tokens),
        }
    }

    /// The current stream's answer to `query`, undecoded; `None` when the host has no
    /// expressions or the stream lacks one of the facts (no route matched, no response).
    pub fn evaluate(&self, query: &FactsQuery) -> Option<Vec<u8>> {
        let token = self.tokens?[query.index()];
        foreign_call("expr_evaluate", &token.to_le_bytes())
    }
}

/// A reconfigured plugin's expressions would otherwise stay compiled in the host for the VM's
/// life.
impl Drop for FactsExpressions {
    fn drop(&mut self) {
        for token in self.tokens.iter().flatten() {
            expression_delete(*token);
        }
    }
}

/// The span's facts, one attribute read each: only what the span will carry is read.
pub fn facts_one_by_one(kind: SpanKind, query: &FactsQuery) -> SpanFacts<'static> {
    let text = |path: &[&str]| property_string(path).map(Cow::Owned);
    let is_client = kind == SpanKind::Client;
    let body_size = |path: [&str; 2]| query.body_sizes.then(|| property_int(&path)).flatten();
    SpanFacts {
        kind: None,
        status_code: response_status()
            .or_else(|| property_int(&["response", "code"]).map(|code| code as u32)),
        protocol: text(&["request", "protocol"]),
        route_name: text(&["xds", "route_name"]),
        downstream_peer: (!is_client).then(|| text(&["source", "address"])).flatten(),
        upstream_address: is_client.then(|| text(&["upstream", "address"])).flatten(),
        upstream_cluster: is_client.then(|| text(&["xds", "cluster_name"])).flatten(),
        grpc_status: query
            .grpc
            .then(|| property_int(&["response", "grpc_status"]))
            .flatten()
            .map(|code| code as u32),
        request_body_size: body_size(["request", "size"]),
        response_body_size: body_size(["response", "size"]),
    }
}

/// Envoy's response flags as short codes (`UF,URX`).
pub fn response_flags() -> String {
    let mut flags = String::new();
    if let Some(bits) = property_int(&["response", "flags"]) {
        crate::span::envoy_flags::short_codes(bits as u64, &mut flags);
    }
    flags
}
