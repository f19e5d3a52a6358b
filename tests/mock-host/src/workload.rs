//! The request the cost and profile examples repeat: what a benchmark client sends, with the
//! facts Envoy has for every stream (its protocol, peer, route and, going out, upstream), so a
//! span's facts read as they would in Envoy.

use crate::MockHost;

pub const INBOUND: i64 = 1;
pub const OUTBOUND: i64 = 2;

pub fn request(traceparent: Option<&str>) -> Vec<(&str, &str)> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/bench/item"),
        (":authority", "bench"),
        (":scheme", "http"),
        ("user-agent", "wrk"),
        ("x-request-id", "0b0a0c0d-1111-2222-3333-444455556666"),
    ];
    if let Some(traceparent) = traceparent {
        headers.push(("traceparent", traceparent));
    }
    headers
}

const ENVOY_FACTS: [(&[&str], &[u8]); 5] = [
    (&["request", "protocol"], b"HTTP/1.1"),
    (&["source", "address"], b"10.0.0.7:51234"),
    (&["xds", "route_name"], b"default"),
    (&["upstream", "address"], b"10.0.0.9:8080"),
    (&["xds", "cluster_name"], b"outbound|8080||payments"),
];

/// Gives a new stream what Envoy knows of it before its request headers.
pub fn set_stream_facts(host: &mut MockHost, stream: u32, direction: i64) {
    for (path, value) in ENVOY_FACTS {
        host.set_stream_property(stream, path, value);
    }
    host.set_stream_int_property(stream, &["xds", "listener_direction"], direction);
}

/// One whole request answered 200.
pub fn exchange(host: &mut MockHost, direction: i64, headers: &[(&str, &str)]) {
    exchange_answered(host, direction, headers, &[(":status", "200")]);
}

/// One whole request answered 200 with `response` for its headers (`:status` among them).
pub fn exchange_answered(
    host: &mut MockHost,
    direction: i64,
    headers: &[(&str, &str)],
    response: &[(&str, &str)],
) {
    let stream = host.new_stream().unwrap();
    set_stream_facts(host, stream, direction);
    host.request_headers(stream, headers).unwrap();
    host.set_stream_int_property(stream, &["response", "code"], 200);
    host.response_headers(stream, response).unwrap();
    host.finish_stream(stream).unwrap();
}
