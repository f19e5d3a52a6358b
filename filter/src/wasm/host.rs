//! Small typed wrappers over host calls. Header values are read as bytes: the SDK's string
//! variants abort the VM on a non-UTF-8 value, which a hostile client can send.

use crate::propagation::{Getter, HeaderBlock, Setter};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use std::time::UNIX_EPOCH;

extern "C" {
    // The SDK's wrapper copies every name and value into its own heap strings; this reads the
    // host's serialized map as one buffer.
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// Request headers as one map, fetched with a single host call and indexed in place. Values
/// that are not UTF-8 cannot carry valid trace context and are left out; their count is
/// returned.
pub fn request_headers() -> (HeaderBlock, u32) {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer it obtained from `proxy_on_memory_allocate` (the SDK's
    // export, which hands out a forgotten `Vec<u8>` of exactly `size` bytes) and its length, so
    // ownership of that allocation passes to us; the SDK's own `get_map_bytes` does the same.
    let bytes = unsafe {
        let status =
            proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size);
        if status != 0 || data.is_null() {
            Vec::new()
        } else {
            Vec::from_raw_parts(data, size, size)
        }
    };
    HeaderBlock::parse(bytes)
}

/// Writes headers straight into the proxy's request header map. Removing a header the request
/// never had costs a host call for nothing, so removals are checked against the headers read.
pub struct RequestHeaderWriter<'a> {
    pub received: &'a HeaderBlock,
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
