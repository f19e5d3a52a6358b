//! A mock proxy-wasm host: loads the built `sidetrace.wasm` with wasmtime, implements the ABI
//! v0.2.1 imports the module uses (and the five WASI calls it makes), and lets tests drive real
//! lifecycles — configure, request and response headers, log, tick, gRPC responses — while
//! recording everything the module asks of the host.

mod abi;
mod expressions;
pub mod profile;
mod state;
pub mod workload;

pub use state::{GrpcCall, LogEntry};

use state::HostState;
use std::path::PathBuf;
use wasmtime::{format_err, Result};
use wasmtime::{Config, Engine, Instance, Linker, Module, Store, TypedFunc};

pub const ROOT_CONTEXT: u32 = 1;

/// Where `make build` puts the module; `SIDETRACE_WASM` overrides.
pub fn default_wasm_path() -> PathBuf {
    if let Ok(path) = std::env::var("SIDETRACE_WASM") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/sidetrace.wasm")
}

/// Compiling the module is the slow part; every host in a test binary shares one compilation.
fn compiled(wasm: &[u8]) -> Result<(Engine, Module)> {
    static CACHE: std::sync::Mutex<Option<(Vec<u8>, Engine, Module)>> = std::sync::Mutex::new(None);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((bytes, engine, module)) = cache.as_ref() {
        if bytes == wasm {
            return Ok((engine.clone(), module.clone()));
        }
    }
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    // Fuel counts the wasm instructions the module executes: a cost figure that does not depend
    // on how busy the machine is.
    config.consume_fuel(true);
    let engine = Engine::new(&config)?;
    let module = Module::new(&engine, wasm)?;
    *cache = Some((wasm.to_vec(), engine.clone(), module.clone()));
    Ok((engine, module))
}

fn read_module(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| {
        format_err!(
            "{}: {error}: build it first with `make build`",
            path.display()
        )
    })
}

/// Actions returned by `proxy_on_request_headers` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

pub struct MockHost {
    store: Store<HostState>,
    instance: Instance,
    next_context: u32,
    root_created: bool,
}

impl MockHost {
    /// Loads and initialises the module from `default_wasm_path()`.
    pub fn load() -> Result<MockHost> {
        let path = default_wasm_path();
        let bytes = read_module(&path)?;
        MockHost::from_bytes(&bytes, &[])
    }

    pub fn load_with_env(env: &[(&str, &str)]) -> Result<MockHost> {
        let path = default_wasm_path();
        let bytes = read_module(&path)?;
        MockHost::from_bytes(&bytes, env)
    }

    pub fn from_bytes(wasm: &[u8], env: &[(&str, &str)]) -> Result<MockHost> {
        let (engine, module) = compiled(wasm)?;
        MockHost::instantiate(engine, module, env)
    }

    /// A host whose module can be profiled with `sample_stacks`: compiled apart, optimised and
    /// with epoch checks, so it never shares the tests' cached compilation.
    pub fn load_for_profiling(wasm: &[u8]) -> Result<MockHost> {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let module = Module::new(&engine, wasm)?;
        MockHost::instantiate(engine, module, &[])
    }

    /// Samples the module's call stack at moments about `every` apart while its code runs, until
    /// the sampler is finished (needs `load_for_profiling`).
    pub fn sample_stacks(&mut self, every: std::time::Duration) -> profile::StackSampler {
        profile::StackSampler::start(&mut self.store, every)
    }

    fn instantiate(engine: Engine, module: Module, env: &[(&str, &str)]) -> Result<MockHost> {
        let mut linker: Linker<HostState> = Linker::new(&engine);
        abi::add_to_linker(&mut linker)?;
        // Imports the filter links but never calls (shared data, queues, HTTP callouts) trap.
        linker.define_unknown_imports_as_traps(&module)?;
        let state = HostState {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..HostState::default()
        };
        let mut store = Store::new(&engine, state);
        store.set_fuel(u64::MAX)?;
        // Only a profiled engine checks epochs, and only once sampling begins.
        store.set_epoch_deadline(u64::MAX / 2);
        store.call_hook(|mut state, hook| {
            let state = state.data_mut();
            if matches!(hook, wasmtime::CallHook::CallingHost) {
                state.host_calls += 1;
            }
            state
                .crossings
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        });
        let instance = linker.instantiate(&mut store, &module)?;
        let mut host = MockHost {
            store,
            instance,
            next_context: ROOT_CONTEXT + 1,
            root_created: false,
        };
        host.call0("_initialize")?;
        Ok(host)
    }

    fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<TypedFunc<P, R>> {
        self.instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|error| format_err!("export {name}: {error}"))
    }

    /// What the module has cost so far: calls it made into the host, and wasm instructions it
    /// executed (fuel). Deterministic for a given module and input.
    pub fn cost(&self) -> (u64, u64) {
        let fuel_used = u64::MAX - self.store.get_fuel().unwrap_or(u64::MAX);
        (self.store.data().host_calls, fuel_used)
    }

    /// The size of the module's linear memory, in bytes.
    pub fn memory_bytes(&mut self) -> u64 {
        let memory = self
            .instance
            .get_memory(&mut self.store, "memory")
            .expect("the module exports its memory");
        memory.data_size(&self.store) as u64
    }

    /// The names the module exports, as a host sees them when it decides which callbacks to make.
    pub fn exports(&mut self) -> Vec<String> {
        self.instance
            .exports(&mut self.store)
            .map(|export| export.name().to_string())
            .collect()
    }

    fn call0(&mut self, name: &str) -> Result<()> {
        let f = self.func::<(), ()>(name)?;
        f.call(&mut self.store, ())
    }

    fn set_context(&mut self, context_id: u32) {
        self.store.data_mut().current_context = context_id;
    }

    /// Creates the root context, starts the VM and configures the plugin; true when accepted.
    pub fn configure(&mut self, plugin_config: &str) -> Result<bool> {
        self.store.data_mut().plugin_config = plugin_config.as_bytes().to_vec();
        self.set_context(ROOT_CONTEXT);
        // The root context is created once; configuring again hands it the new configuration.
        if !self.root_created {
            let create = self.func::<(i32, i32), ()>("proxy_on_context_create")?;
            create.call(&mut self.store, (ROOT_CONTEXT as i32, 0))?;
            let vm_start = self.func::<(i32, i32), i32>("proxy_on_vm_start")?;
            if vm_start.call(&mut self.store, (ROOT_CONTEXT as i32, 0))? == 0 {
                return Ok(false);
            }
            self.root_created = true;
        }
        let configure = self.func::<(i32, i32), i32>("proxy_on_configure")?;
        let size = plugin_config.len() as i32;
        Ok(configure.call(&mut self.store, (ROOT_CONTEXT as i32, size))? != 0)
    }

    /// Host-wide properties such as `xds.node.metadata.NAME` (path segments joined by NUL).
    pub fn set_property(&mut self, path: &[&str], value: &[u8]) {
        self.store
            .data_mut()
            .properties
            .insert(path.join("\0").into_bytes(), value.to_vec());
    }

    pub fn set_int_property(&mut self, path: &[&str], value: i64) {
        self.set_property(path, &value.to_le_bytes());
    }

    pub fn now_nanos(&self) -> u64 {
        self.store.data().now_nanos
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.store.data_mut().now_nanos += ms * 1_000_000;
    }

    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    pub fn tick(&mut self) -> Result<()> {
        self.set_context(ROOT_CONTEXT);
        let f = self.func::<i32, ()>("proxy_on_tick")?;
        f.call(&mut self.store, ROOT_CONTEXT as i32)
    }

    /// Configures another root context in the same VM, as a configuration push does; returns
    /// its id, or None when the configuration was rejected.
    pub fn add_root(&mut self, plugin_config: &str) -> Result<Option<u32>> {
        let id = self.next_context;
        self.next_context += 1;
        self.store.data_mut().plugin_config = plugin_config.as_bytes().to_vec();
        self.set_context(id);
        let create = self.func::<(i32, i32), ()>("proxy_on_context_create")?;
        create.call(&mut self.store, (id as i32, 0))?;
        let configure = self.func::<(i32, i32), i32>("proxy_on_configure")?;
        let accepted =
            configure.call(&mut self.store, (id as i32, plugin_config.len() as i32))? != 0;
        Ok(accepted.then_some(id))
    }

    /// Asks the root context to finish (plugin retired); true when it is done at once.
    pub fn done(&mut self) -> Result<bool> {
        self.set_context(ROOT_CONTEXT);
        let f = self.func::<i32, i32>("proxy_on_done")?;
        Ok(f.call(&mut self.store, ROOT_CONTEXT as i32)? != 0)
    }

    pub fn root_called_done(&self) -> bool {
        self.store.data().done_called
    }

    /// A new HTTP stream on the root context.
    pub fn new_stream(&mut self) -> Result<u32> {
        let id = self.next_context;
        self.next_context += 1;
        self.store.data_mut().streams.insert(id, Default::default());
        self.set_context(id);
        let create = self.func::<(i32, i32), ()>("proxy_on_context_create")?;
        create.call(&mut self.store, (id as i32, ROOT_CONTEXT as i32))?;
        Ok(id)
    }

    /// Properties of one stream (`response.code`, `xds.listener_direction`, ...).
    pub fn set_stream_property(&mut self, stream: u32, path: &[&str], value: &[u8]) {
        let key = path.join("\0").into_bytes();
        self.store
            .data_mut()
            .streams
            .entry(stream)
            .or_default()
            .properties
            .insert(key, value.to_vec());
    }

    pub fn set_stream_int_property(&mut self, stream: u32, path: &[&str], value: i64) {
        self.set_stream_property(stream, path, &value.to_le_bytes());
    }

    fn action(code: i32) -> Action {
        if code == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    pub fn request_headers(&mut self, stream: u32, headers: &[(&str, &str)]) -> Result<Action> {
        let pairs: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        self.request_headers_bytes(stream, pairs)
    }

    /// Headers with raw byte values (non-UTF-8 included), as a hostile client can send them.
    pub fn request_headers_bytes(
        &mut self,
        stream: u32,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<Action> {
        let count = headers.len() as i32;
        self.store
            .data_mut()
            .streams
            .entry(stream)
            .or_default()
            .request_headers = headers;
        self.set_context(stream);
        let f = self.func::<(i32, i32, i32), i32>("proxy_on_request_headers")?;
        Ok(Self::action(
            f.call(&mut self.store, (stream as i32, count, 1))?,
        ))
    }

    pub fn response_headers(&mut self, stream: u32, headers: &[(&str, &str)]) -> Result<Action> {
        let pairs: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let count = pairs.len() as i32;
        self.store
            .data_mut()
            .streams
            .entry(stream)
            .or_default()
            .response_headers = pairs;
        self.set_context(stream);
        // Like Envoy, a module that does not export the callback is not called.
        let Some(f) = self.optional_func::<(i32, i32, i32), i32>("proxy_on_response_headers")
        else {
            return Ok(Action::Continue);
        };
        Ok(Self::action(
            f.call(&mut self.store, (stream as i32, count, 1))?,
        ))
    }

    /// The stream ends: `on_log`, then `on_done` and `on_delete`, as Envoy does; like Envoy, a
    /// callback the module does not export is skipped.
    pub fn finish_stream(&mut self, stream: u32) -> Result<()> {
        self.set_context(stream);
        if let Some(log) = self.optional_func::<i32, ()>("proxy_on_log") {
            log.call(&mut self.store, stream as i32)?;
        }
        let done = self.func::<i32, i32>("proxy_on_done")?;
        done.call(&mut self.store, stream as i32)?;
        if let Some(delete) = self.optional_func::<i32, ()>("proxy_on_delete") {
            delete.call(&mut self.store, stream as i32)?;
        }
        Ok(())
    }

    fn optional_func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
    ) -> Option<TypedFunc<P, R>> {
        self.func(name).ok()
    }

    /// A whole exchange: request headers, response headers with `status`, end of stream.
    pub fn exchange(
        &mut self,
        direction: i64,
        request: &[(&str, &str)],
        status: i64,
    ) -> Result<u32> {
        let stream = self.new_stream()?;
        self.set_stream_int_property(stream, &["xds", "listener_direction"], direction);
        self.request_headers(stream, request)?;
        self.set_stream_int_property(stream, &["response", "code"], status);
        self.response_headers(stream, &[(":status", &status.to_string())])?;
        self.finish_stream(stream)?;
        Ok(stream)
    }

    pub fn request_headers_now(&self, stream: u32) -> Vec<(String, String)> {
        self.store
            .data()
            .streams
            .get(&stream)
            .map(|s| {
                s.request_headers
                    .iter()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn request_header(&self, stream: u32, name: &str) -> Option<String> {
        self.request_headers_now(stream)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn filter_state(&self, stream: u32, name: &str) -> Option<String> {
        let stream = self.store.data().streams.get(&stream)?;
        stream
            .filter_state
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn grpc_calls(&self) -> &[GrpcCall] {
        &self.store.data().grpc_calls
    }

    pub fn take_grpc_calls(&mut self) -> Vec<GrpcCall> {
        std::mem::take(&mut self.store.data_mut().grpc_calls)
    }

    /// Makes the next `proxy_grpc_call` fail as Envoy does for an unknown cluster.
    pub fn refuse_grpc_calls(&mut self, refuse: bool) {
        self.store.data_mut().refuse_grpc = refuse;
        self.store.data_mut().close_refused_inline = false;
    }

    /// Refuses gRPC calls, reporting each refusal to the module's close callback from inside the
    /// refused call, re-entering the module.
    pub fn refuse_grpc_calls_closing_inline(&mut self) {
        self.store.data_mut().refuse_grpc = true;
        self.store.data_mut().close_refused_inline = true;
    }

    /// The collector answered OK with `body` (an encoded ExportTraceServiceResponse): the
    /// message, then trailers, then the close, as Envoy delivers a stream's end.
    pub fn grpc_respond_ok(&mut self, token: u32, body: &[u8]) -> Result<()> {
        self.store.data_mut().grpc_receive_buffer = body.to_vec();
        self.set_context(ROOT_CONTEXT);
        let receive = self.func::<(i32, i32, i32), ()>("proxy_on_grpc_receive")?;
        receive.call(
            &mut self.store,
            (ROOT_CONTEXT as i32, token as i32, body.len() as i32),
        )?;
        self.grpc_close(token, 0, Vec::new())
    }

    /// The export failed with a gRPC status; `details` is the `grpc-status-details-bin` trailer.
    pub fn grpc_respond_error(&mut self, token: u32, status: u32, message: &str) -> Result<()> {
        self.grpc_respond_error_with_details(token, status, message, None)
    }

    pub fn grpc_respond_error_with_details(
        &mut self,
        token: u32,
        status: u32,
        message: &str,
        details: Option<Vec<u8>>,
    ) -> Result<()> {
        self.store.data_mut().grpc_status = (status, message.to_string());
        let mut trailers = vec![("grpc-status".to_string(), status.to_string().into_bytes())];
        if let Some(details) = details {
            trailers.push(("grpc-status-details-bin".to_string(), details));
        }
        self.grpc_close(token, status, trailers)
    }

    fn grpc_close(
        &mut self,
        token: u32,
        status: u32,
        trailers: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        self.set_context(ROOT_CONTEXT);
        let count = trailers.len() as i32;
        self.store.data_mut().grpc_trailing_metadata = trailers;
        self.store.data_mut().in_trailing_metadata_callback = true;
        let trailing =
            self.func::<(i32, i32, i32), ()>("proxy_on_grpc_receive_trailing_metadata")?;
        let result = trailing.call(&mut self.store, (ROOT_CONTEXT as i32, token as i32, count));
        self.store.data_mut().in_trailing_metadata_callback = false;
        result?;
        let close = self.func::<(i32, i32, i32), ()>("proxy_on_grpc_close")?;
        close.call(
            &mut self.store,
            (ROOT_CONTEXT as i32, token as i32, status as i32),
        )
    }

    /// Property paths read so far (`xds.listener_direction`, ...), and forgets them.
    /// Makes the host one without Envoy's CEL foreign functions; call before `configure`.
    pub fn without_expressions(&mut self) {
        self.store.data_mut().expressions_supported = false;
    }

    /// Expressions the module has compiled and not deleted.
    pub fn live_expressions(&self) -> usize {
        self.store.data().expressions.iter().flatten().count()
    }

    /// Expressions evaluated since the last call, as their text.
    pub fn take_expressions_evaluated(&mut self) -> Vec<String> {
        std::mem::take(&mut self.store.data_mut().expressions_evaluated)
    }

    pub fn take_properties_read(&mut self) -> Vec<String> {
        std::mem::take(&mut self.store.data_mut().properties_read)
    }

    /// The header writes made since the last call: (`add`, `replace` or `remove`, name).
    pub fn take_header_writes(&mut self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut self.store.data_mut().header_writes)
    }

    /// The request header reads made since the last call: `*` for the whole map, else the name
    /// looked up.
    pub fn take_request_header_reads(&mut self) -> Vec<String> {
        std::mem::take(&mut self.store.data_mut().request_header_reads)
    }

    /// Streams the module cancelled (exports past their deadline).
    pub fn cancelled_grpc_streams(&self) -> &[u32] {
        &self.store.data().cancelled
    }

    pub fn metric(&self, name: &str) -> Option<i64> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|m| m.0 == name)
            .map(|m| m.2)
    }

    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    pub fn log_lines_at_least(&self, level: u32) -> Vec<String> {
        self.logs()
            .iter()
            .filter(|l| l.level >= level)
            .map(|l| l.message.clone())
            .collect()
    }
}

/// Reads a little-endian u32 the module stored in host-visible form (used by tests of the map format).
pub fn read_u32(bytes: &[u8], at: usize) -> Result<u32> {
    let slice = bytes
        .get(at..at + 4)
        .ok_or_else(|| format_err!("short map"))?;
    Ok(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
}
