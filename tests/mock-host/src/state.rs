//! What the mock host remembers: configuration, properties, per-stream headers, gRPC calls,
//! metrics and logs.

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct GrpcCall {
    pub token: u32,
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub metadata: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: u32,
    pub message: String,
}

#[derive(Default)]
pub struct Stream {
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    pub filter_state: HashMap<String, Vec<u8>>,
}

pub struct HostState {
    /// Counts every crossing between host and module code, so it is odd while the module's
    /// code runs; the stack sampler keeps only samples taken in the stretch they were asked in.
    pub crossings: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub now_nanos: u64,
    pub tick_period_ms: u32,
    pub plugin_config: Vec<u8>,
    pub env: Vec<(String, String)>,
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    pub streams: HashMap<u32, Stream>,
    /// The context the host is calling into, or the one the module made effective.
    pub current_context: u32,
    pub grpc_calls: Vec<GrpcCall>,
    pub next_token: u32,
    pub refuse_grpc: bool,
    /// With `refuse_grpc`: call the module's `proxy_on_grpc_close` from inside the refused call.
    pub close_refused_inline: bool,
    pub grpc_receive_buffer: Vec<u8>,
    /// Streams opened and not yet ended by the module.
    pub open_streams: HashMap<u32, GrpcCall>,
    pub cancelled: Vec<u32>,
    pub grpc_trailing_metadata: Vec<(String, Vec<u8>)>,
    pub in_trailing_metadata_callback: bool,
    pub grpc_status: (u32, String),
    /// (name, type, value); the index is the metric id.
    pub metrics: Vec<(String, u32, i64)>,
    pub logs: Vec<LogEntry>,
    pub done_called: bool,
    /// Calls the module made into the host (imports), counted by a call hook.
    pub host_calls: u64,
    /// Every property path the module asked for, in order (segments joined by `.`).
    pub properties_read: Vec<String>,
    /// Every header write the module made, in order: (`add`, `replace` or `remove`, name).
    pub header_writes: Vec<(&'static str, String)>,
    /// Every read of the request's headers, in order: `*` for the whole map, else the name
    /// looked up.
    pub request_header_reads: Vec<String>,
    /// Whether `expr_create` and friends exist, as in Envoy; some hosts have none.
    pub expressions_supported: bool,
    /// Compiled expressions; a token is an index, a deleted one `None`.
    pub expressions: Vec<Option<String>>,
    /// Evaluations made, in order, as the expression's text.
    pub expressions_evaluated: Vec<String>,
}

impl Default for HostState {
    fn default() -> Self {
        HostState {
            crossings: Default::default(),
            now_nanos: 1_767_225_600_000_000_000,
            tick_period_ms: 0,
            plugin_config: Vec::new(),
            env: Vec::new(),
            properties: HashMap::new(),
            streams: HashMap::new(),
            current_context: 0,
            grpc_calls: Vec::new(),
            next_token: 1,
            refuse_grpc: false,
            close_refused_inline: false,
            grpc_receive_buffer: Vec::new(),
            open_streams: HashMap::new(),
            cancelled: Vec::new(),
            grpc_trailing_metadata: Vec::new(),
            in_trailing_metadata_callback: false,
            grpc_status: (0, String::new()),
            metrics: Vec::new(),
            logs: Vec::new(),
            done_called: false,
            host_calls: 0,
            properties_read: Vec::new(),
            header_writes: Vec::new(),
            request_header_reads: Vec::new(),
            expressions_supported: true,
            expressions: Vec::new(),
            expressions_evaluated: Vec::new(),
        }
    }
}

/// The proxy-wasm map wire format: count, (key length, value length) pairs, then each key and
/// value followed by a NUL.
pub fn serialize_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

pub fn deserialize_map(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let at = 4 + i * 8;
        let k = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        let v = u32::from_le_bytes(bytes.get(at + 4..at + 8)?.try_into().ok()?) as usize;
        sizes.push((k, v));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for (k, v) in sizes {
        let key = String::from_utf8(bytes.get(at..at + k)?.to_vec()).ok()?;
        at += k + 1;
        let value = bytes.get(at..at + v)?.to_vec();
        at += v + 1;
        pairs.push((key, value));
    }
    Some(pairs)
}
