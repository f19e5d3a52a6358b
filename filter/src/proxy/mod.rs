//! The only code that talks to Envoy, on the `proxy-wasm` SDK: a root context per plugin that
//! reads the configuration once and owns the exporter, an HTTP context per stream.

mod header_map;
mod host;
mod http;
mod metrics;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::<root::SidetraceRoot>::default()
    });
}}
