//! Typed wrappers over the host calls of `abi`. Header values are read as bytes: a hostile client
//! can send a value that is not UTF-8, and that must never abort the VM.

use super::abi;
use crate::propagation::{header_block, Getter, HeaderBlock, Rewriter, Setter};
use crate::short_compare::equal_short;

/// Takes ownership of a buffer the host filled: the host obtained it from
/// `proxy_on_memory_allocate`, which hands out a leaked boxed slice of exactly `size` bytes.
fn take_host_buffer(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if status != abi::OK {
        return None;
    }
    if data.is_null() || size == 0 {
        return Some(Vec::new());
    }
    // SAFETY: see above; the allocation is handed back once, here.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Request headers as one map, fetched with a single host call and indexed in place. Values
/// that are not UTF-8 cannot carry valid trace context and are left out; their count is
/// returned.
pub fn request_headers() -> (HeaderBlock, u32) {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: the host writes a buffer pointer and its length into the two locals.
    let status =
        unsafe { abi::proxy_get_header_map_pairs(abi::REQUEST_HEADERS, &mut data, &mut size) };
    HeaderBlock::parse(take_host_buffer(status, data, size).unwrap_or_default())
}

fn set_header(map_type: u32, name: &str, value: &str) {
    // SAFETY: both slices outlive the call; the host copies them.
    unsafe {
        abi::proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        );
    }
}

/// Writes headers straight into the proxy's request header map. Envoy charges a quarter less to
/// add a header than to replace one (the replace searches for values to drop), and a removal of
/// a header the request never had is a call for nothing: both are decided against what was read
/// of the request.
pub struct RequestHeaderWriter<'a> {
    received: Received<'a>,
    /// Fingerprints of the names written so far: a second write of a name replaces the first.
    /// Equal names always match; unequal ones that collide, or writes past the last slot, only
    /// cost a replace.
    written: [u64; 8],
    writes: usize,
    /// While `leaves_as_is` runs its writes: whether one would change a header. Nothing is
    /// written meanwhile.
    trying: Option<bool>,
}

/// What was read of the request before writing to it.
enum Received<'a> {
    /// Its header map. Unless every header was readable (`complete`), a name missing from it may
    /// still be in the request, with a value that is not UTF-8, and must be replaced or removed.
    Map {
        headers: &'a HeaderBlock,
        complete: bool,
    },
    /// One header looked up: whether the request has it. Of any other, nothing is known.
    One { name: &'static str, present: bool },
}

impl<'a> RequestHeaderWriter<'a> {
    pub fn new(received: &'a HeaderBlock, unreadable: u32) -> Self {
        Self::with(Received::Map {
            headers: received,
            complete: unreadable == 0,
        })
    }

    /// For a request of which only `name` was looked up.
    pub fn after_lookup(name: &'static str, present: bool) -> Self {
        Self::with(Received::One { name, present })
    }

    fn with(received: Received<'a>) -> Self {
        RequestHeaderWriter {
            received,
            written: [0; 8],
            writes: 0,
            trying: None,
        }
    }

    /// Whether the request holds `name` with exactly `value` and no other value. Asked of a
    /// request of which one header was looked up, or whose map had unreadable headers: no.
    #[inline(never)]
    fn holds_only(&self, name: &str, value: &str) -> bool {
        let Received::Map {
            headers,
            complete: true,
        } = self.received
        else {
            return false;
        };
        let (mut values, mut same) = (0, true);
        headers.get_all(name, &mut |held| {
            values += 1;
            same &= equal_short(held.as_bytes(), value.as_bytes());
        });
        values == 1 && same
    }

    /// Whether the request may already hold `name`, whose fingerprint `print` computes.
    fn may_hold(&self, name: &str, print: impl Fn() -> u64) -> bool {
        let received = match self.received {
            Received::Map { headers, complete } => !complete || headers.get(name).is_some(),
            Received::One {
                name: looked_up,
                present,
            } => present || looked_up != name,
        };
        received || self.may_have_written(print)
    }

    /// Whether `name`, whose fingerprint `print` computes, may have been written already.
    fn may_have_written(&self, print: impl Fn() -> u64) -> bool {
        self.writes > self.written.len()
            || (self.writes > 0 && self.written[..self.writes].contains(&print()))
    }

    fn note_written(&mut self, print: u64) {
        if let Some(slot) = self.written.get_mut(self.writes) {
            *slot = print;
        }
        self.writes += 1;
    }
}

/// The name's length and last four bytes: trace header names differ in one or the other.
fn fingerprint(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let tail = bytes.len().checked_sub(4).map_or(0, |at| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    });
    (bytes.len() as u64) << 32 | tail as u64
}

impl Setter for RequestHeaderWriter<'_> {
    // Out of line: every format's injection is instantiated for this writer.
    #[inline(never)]
    fn set(&mut self, name: &str, value: &str) {
        if let Some(changes) = self.trying {
            self.trying = Some(changes || !self.holds_only(name, value));
            return;
        }
        let print = fingerprint(name);
        if self.may_hold(name, || print) {
            set_header(abi::REQUEST_HEADERS, name, value);
        } else {
            // SAFETY: both slices outlive the call; the host copies them.
            unsafe {
                abi::proxy_add_header_map_value(
                    abi::REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                );
            }
        }
        self.note_written(print);
    }

    /// A replace costs Envoy ~4,400 instructions: a header holding exactly this value since it
    /// arrived is left as it is (a sampled caller's `tracestate`, continued unchanged).
    fn set_unless_held(&mut self, name: &str, value: &str) {
        let written = self.may_have_written(|| fingerprint(name));
        if written || self.trying.is_some() || !self.holds_only(name, value) {
            self.set(name, value);
        }
    }

    #[inline(never)]
    fn remove(&mut self, name: &str) {
        let may_hold = self.may_hold(name, || fingerprint(name));
        if let Some(changes) = self.trying {
            self.trying = Some(changes || may_hold);
            return;
        }
        if may_hold {
            // SAFETY: the name outlives the call.
            unsafe {
                abi::proxy_remove_header_map_value(abi::REQUEST_HEADERS, name.as_ptr(), name.len());
            }
        }
    }
}

impl Rewriter for RequestHeaderWriter<'_> {
    fn leaves_as_is(&mut self, writes: impl FnOnce(&mut Self)) -> bool {
        self.trying = Some(false);
        writes(self);
        self.trying.take() == Some(false)
    }

    /// After one header's lookup (a W3C-only plugin, whose callers pass through without being
    /// asked), no: writing is never skipped on what was not read.
    fn holds(&self, name: &str) -> bool {
        matches!(self.received, Received::Map { headers, .. } if headers.get(name).is_some())
    }
}

pub fn set_response_header(name: &str, value: &str) {
    set_header(abi::RESPONSE_HEADERS, name, value);
}

fn map_value(map_type: u32, name: &str) -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: the name outlives the call; the host writes a buffer pointer and length.
    let status = unsafe {
        abi::proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    take_host_buffer(status, data, size)
}

/// One request header's value, looked up without reading the others.
pub fn request_header(name: &str) -> Option<Vec<u8>> {
    map_value(abi::REQUEST_HEADERS, name)
}

/// One response header's value, during `proxy_on_response_headers`.
pub fn response_header(name: &str) -> Option<Vec<u8>> {
    map_value(abi::RESPONSE_HEADERS, name)
}

pub fn remove_response_header(name: &str) {
    // SAFETY: the name outlives the call.
    unsafe {
        abi::proxy_remove_header_map_value(abi::RESPONSE_HEADERS, name.as_ptr(), name.len());
    }
}

/// A value of the gRPC callout's trailing metadata, during `proxy_on_grpc_receive_trailing_metadata`.
pub fn grpc_trailer(name: &str) -> Option<Vec<u8>> {
    map_value(abi::GRPC_TRAILING_METADATA, name)
}

/// The response's status code from its `:status` header, during `proxy_on_response_headers`:
/// a header lookup costs Envoy a fraction of the `response.code` property's attribute lookup.
pub fn response_status() -> Option<u32> {
    crate::http_span::parse_status(&response_header(":status")?)
}

fn buffer(buffer_type: u32, size: usize) -> Vec<u8> {
    let (mut data, mut returned) = (std::ptr::null_mut(), 0);
    // SAFETY: the host writes a buffer pointer and length into the two locals.
    let status =
        unsafe { abi::proxy_get_buffer_bytes(buffer_type, 0, size, &mut data, &mut returned) };
    take_host_buffer(status, data, returned).unwrap_or_default()
}

/// The plugin's configuration, during `proxy_on_configure`.
pub fn plugin_configuration(size: usize) -> Vec<u8> {
    buffer(abi::PLUGIN_CONFIGURATION, size)
}

/// The message a gRPC callout received, during `proxy_on_grpc_receive`.
pub fn grpc_message(size: usize) -> Vec<u8> {
    buffer(abi::GRPC_RECEIVE_BUFFER, size)
}

/// A property path travels as its segments joined by NUL bytes.
fn property_path(path: &[&str]) -> Vec<u8> {
    let mut joined = Vec::with_capacity(path.iter().map(|s| s.len() + 1).sum());
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            joined.push(0);
        }
        joined.extend_from_slice(segment.as_bytes());
    }
    joined
}

pub fn property_bytes(path: &[&str]) -> Option<Vec<u8>> {
    let path = property_path(path);
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: the path outlives the call; the host writes a buffer pointer and length.
    let status =
        unsafe { abi::proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    take_host_buffer(status, data, size)
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

/// Calls one of the host's foreign functions; `None` when the host has no such function or it
/// failed.
fn foreign_call(name: &str, arguments: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: both slices outlive the call; the host writes a buffer pointer and length.
    let status = unsafe {
        abi::proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    };
    take_host_buffer(status, data, size)
}

/// Compiles a CEL expression over the stream's attributes (Envoy's `expr_create`), for this
/// root context's streams to evaluate; its token, or `None` if the host cannot.
pub fn expression_create(text: &str) -> Option<u32> {
    let token = foreign_call("expr_create", text.as_bytes())?;
    Some(u32::from_le_bytes(token.as_slice().try_into().ok()?))
}

/// Evaluates a compiled expression against the current stream (Envoy's `expr_evaluate`); the
/// value serialized as an attribute read would hand it over.
pub fn expression_evaluate(token: u32) -> Option<Vec<u8>> {
    foreign_call("expr_evaluate", &token.to_le_bytes())
}

pub fn expression_delete(token: u32) {
    foreign_call("expr_delete", &token.to_le_bytes());
}

pub fn set_filter_state(name: &str, value: &[u8]) {
    // SAFETY: both slices outlive the call; the host copies them.
    unsafe {
        abi::proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len());
    }
}

pub fn now_unix_nanos() -> u64 {
    let mut now = 0;
    // SAFETY: the host writes one u64.
    unsafe { abi::proxy_get_current_time_nanoseconds(&mut now) };
    now
}

pub fn set_tick_period_ms(period: u32) {
    // SAFETY: a plain value call.
    unsafe { abi::proxy_set_tick_period_milliseconds(period) };
}

/// Tells the host a root context that answered `false` to `proxy_on_done` has finished.
pub fn done() {
    // SAFETY: a plain call.
    unsafe { abi::proxy_done() };
}

pub fn define_metric(metric_type: u32, name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: the name outlives the call; the host writes one u32.
    let status =
        unsafe { abi::proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) };
    (status == abi::OK).then_some(id)
}

pub fn increment_metric(id: u32, delta: i64) {
    // SAFETY: a plain value call.
    unsafe { abi::proxy_increment_metric(id, delta) };
}

/// Opens a gRPC stream to `target` (a serialized `GrpcService` or a cluster name) and sends
/// `message` as its only message. Returns the stream's token, or the host's failure status.
pub fn send_grpc_message(
    target: &[u8],
    service: &str,
    method: &str,
    metadata: &[(&[u8], &[u8])],
    message: &[u8],
) -> Result<u32, u32> {
    let metadata = if metadata.is_empty() {
        Vec::new()
    } else {
        header_block::serialize(metadata)
    };
    let mut token = 0;
    // SAFETY: every slice outlives the call; the host copies them and writes one u32.
    let status = unsafe {
        abi::proxy_grpc_stream(
            target.as_ptr(),
            target.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            &mut token,
        )
    };
    if status != abi::OK {
        return Err(status);
    }
    // SAFETY: the message outlives the call; the host copies it.
    let status = unsafe { abi::proxy_grpc_send(token, message.as_ptr(), message.len(), 1) };
    if status != abi::OK {
        cancel_grpc(token);
        return Err(status);
    }
    Ok(token)
}

pub fn cancel_grpc(token: u32) {
    // SAFETY: a plain value call.
    unsafe { abi::proxy_grpc_cancel(token) };
}

pub fn log(level: u32, message: &str) {
    // SAFETY: the message outlives the call; the host copies it.
    unsafe { abi::proxy_log(level, message.as_ptr(), message.len()) };
}

pub fn log_error(message: &str) {
    log(abi::LOG_ERROR, message);
}

pub fn log_info(message: &str) {
    log(abi::LOG_INFO, message);
}

pub fn log_warn(message: &str) {
    log(abi::LOG_WARN, message);
}
