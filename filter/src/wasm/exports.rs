//! The callbacks Envoy makes into the module, each routed to its context. Only callbacks
//! sidetrace acts on are exported: the host skips an event whose callback is missing, so body
//! chunks, connection events and the rest never enter the VM.

use super::abi;
use super::host;
use super::root::SidetraceRoot;
use super::stream::SidetraceStream;
use std::cell::RefCell;

/// `FilterHeadersStatus::Continue`: sidetrace never holds a request.
const CONTINUE: u32 = 0;

/// The VM's contexts: a root per plugin sharing this VM, a stream per HTTP request in flight.
/// Streams stay sorted by id: the host numbers contexts in order, so a new one goes at the end,
/// lookups are a binary search, and a finished one leaves a gap of one pointer to close. (A
/// BTreeMap cost 2,100 wasm instructions more per request, most of it node allocation.)
struct Contexts {
    roots: Vec<(u32, SidetraceRoot)>,
    streams: Vec<(u32, Box<SidetraceStream>)>,
}

impl Contexts {
    fn stream_index(&self, context_id: u32) -> Result<usize, usize> {
        self.streams
            .binary_search_by_key(&context_id, |(id, _)| *id)
    }
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = const {
        RefCell::new(Contexts { roots: Vec::new(), streams: Vec::new() })
    };
}

/// Runs `act` on the contexts. A callback the host makes from inside one of our own host calls
/// (a gRPC stream that fails while it opens) finds them busy and is skipped: the call that
/// opened it already reports the failure, as the token it names was never recorded.
fn with_contexts<T>(act: impl FnOnce(&mut Contexts) -> T) -> Option<T> {
    CONTEXTS.with(|contexts| contexts.try_borrow_mut().ok().map(|mut c| act(&mut c)))
}

fn with_root<T>(root_id: u32, act: impl FnOnce(&mut SidetraceRoot) -> T) -> Option<T> {
    with_contexts(|contexts| {
        let at = contexts.roots.iter().position(|(id, _)| *id == root_id)?;
        let result = act(&mut contexts.roots[at].1);
        // `proxy_on_delete` is not exported (Envoy would call it for every stream too): a root
        // is forgotten once it says it is done.
        if contexts.roots[at].1.is_finished() {
            contexts.roots.swap_remove(at);
        }
        Some(result)
    })
    .flatten()
}

fn with_stream(context_id: u32, act: impl FnOnce(&mut SidetraceStream)) {
    with_contexts(|contexts| {
        if let Ok(at) = contexts.stream_index(context_id) {
            act(&mut contexts.streams[at].1);
        }
    });
}

extern "C" {
    fn __wasm_call_ctors();
}

#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the reactor's static constructors, run once before anything else, as wasi-libc's
    // own `_initialize` would.
    unsafe { __wasm_call_ctors() };
    // A panic aborts the VM; the reason and where go to Envoy's log first (written out here: the
    // panic's own `Display` would be carried for this alone).
    std::panic::set_hook(Box::new(|panic| {
        let message = panic.payload_as_str().unwrap_or("");
        let (file, line) = panic
            .location()
            .map_or(("", 0), |at| (at.file(), at.line()));
        host::log(
            abi::LOG_CRITICAL,
            &format!("sidetrace: panicked at {file}:{line}: {message}"),
        )
    }));
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Where the host puts the data a host call returns; `host::take_host_buffer` takes it back.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)) as *mut u8
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_id: u32, _vm_configuration_size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    with_contexts(|contexts| {
        if parent_id == 0 {
            contexts.roots.push((context_id, SidetraceRoot::new()));
            return;
        }
        let stream = contexts
            .roots
            .iter()
            .find(|(id, _)| *id == parent_id)
            .and_then(|(_, root)| root.new_stream());
        if let (Some(stream), Err(at)) = (stream, contexts.stream_index(context_id)) {
            contexts.streams.insert(at, (context_id, Box::new(stream)));
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_id: u32, configuration_size: usize) -> u32 {
    with_root(root_id, |root| root.on_configure(configuration_size)).unwrap_or(false) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_id: u32) {
    with_root(root_id, SidetraceRoot::on_tick);
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, _end: u32) -> u32 {
    with_stream(context_id, SidetraceStream::on_request_headers);
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: usize, _end: u32) -> u32 {
    with_stream(context_id, SidetraceStream::on_response_headers);
    CONTINUE
}

/// A stream ends here: its span is finished and the stream forgotten. (Envoy calls
/// `proxy_on_done` after its access log, with the stream's facts still readable; doing the work
/// here rather than in `proxy_on_log`, and not exporting `proxy_on_delete`, saves two calls into
/// the VM per request.) A root may answer "not yet" while exports are on the wire.
#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    let stream = with_contexts(|contexts| {
        let at = contexts.stream_index(context_id).ok()?;
        Some(contexts.streams.remove(at).1)
    })
    .flatten();
    if let Some(mut stream) = stream {
        stream.on_done();
        return 1;
    }
    with_root(context_id, SidetraceRoot::on_done).unwrap_or(true) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(root_id: u32, token: u32, message_size: usize) {
    with_root(root_id, |root| root.on_grpc_message(token, message_size));
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(root_id: u32, token: u32, _count: u32) {
    with_root(root_id, |root| root.on_grpc_trailing_metadata(token));
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(root_id: u32, token: u32, status: u32) {
    with_root(root_id, |root| root.on_grpc_close(token, status));
}
