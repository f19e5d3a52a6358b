//! sidetrace: OpenTelemetry tracing at the Envoy sidecar.
//!
//! Everything but `proxy` is plain Rust with no host calls, tested natively. `proxy` is the thin
//! proxy-wasm glue that feeds request facts in and sends OTLP batches out.

pub mod config;
pub mod context;
pub mod export;
pub mod hex;
pub mod ids;
pub mod otlp;
pub mod plugin;
pub mod propagation;
pub mod sampling;
pub mod span;
pub mod tracer;

#[cfg(target_arch = "wasm32")]
mod proxy;
