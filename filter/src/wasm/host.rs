//! Small typed wrappers over host calls. Header values are read as bytes: the SDK's string
//! variants abort the VM on a non-UTF-8 value, which a hostile client can send.

use crate::propagation::{Getter, Headers, Setter};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use std::time::UNIX_EPOCH;

/// Request headers as one map, fetched with a single host call. Values that are not UTF-8
/// cannot carry valid trace context and are left out; the count of such values is returned.
pub fn request_headers() -> (Headers, u32) {
    let pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
    let mut skipped = 0;
    let mut entries = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        match String::from_utf8(value) {
            Ok(value) => entries.push((name, value)),
            Err(_) => skipped += 1,
        }
    }
    (Headers { entries }, skipped)
}

/// Writes headers straight into the proxy's request header map. Removing a header the request
/// never had costs a host call for nothing, so removals are checked against the headers read.
pub struct RequestHeaderWriter<'a> {
    pub received: &'a Headers,
}

impl Setter for RequestHeaderWriter<'_> {
    fn set(&mut self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
    }

    fn remove(&mut self, name: &str) {
        if self.received.get(name).is_some() {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
    }
}

pub fn set_response_header(name: &str, value: &str) {
    let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
}

pub fn property_bytes(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

pub fn property_string(path: &[&str]) -> Option<String> {
    property_bytes(path)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|s| !s.is_empty())
}

/// Integer attributes arrive as 8 little-endian bytes.
pub fn property_int(path: &[&str]) -> Option<i64> {
    let bytes = property_bytes(path)?;
    let array: [u8; 8] = bytes.as_slice().try_into().ok()?;
    Some(i64::from_le_bytes(array))
}

pub fn set_filter_state(name: &str, value: &[u8]) {
    let _ = hostcalls::set_property(vec![name], Some(value));
}

pub fn now_unix_nanos() -> u64 {
    let now = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn log_error(message: &str) {
    let _ = hostcalls::log(proxy_wasm::types::LogLevel::Error, message);
}

pub fn log_info(message: &str) {
    let _ = hostcalls::log(proxy_wasm::types::LogLevel::Info, message);
}

pub fn log_warn(message: &str) {
    let _ = hostcalls::log(proxy_wasm::types::LogLevel::Warn, message);
}
