//! The proxy-wasm glue: a root context per plugin instance parses the configuration once and
//! owns the exporter; each HTTP stream gets an `Rc` of both. Everything it decides is delegated
//! to the pure modules of the crate.

mod host;
mod metrics;
mod plugin;
mod root;
mod stream;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::SidetraceRoot::new()));
}}
