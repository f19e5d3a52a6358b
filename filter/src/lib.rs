//! sidetrace: OpenTelemetry tracing at the Envoy sidecar.
//!
//! Everything but `wasm` is plain Rust with no host calls, tested natively. `wasm` is the thin
//! proxy-wasm glue that feeds request facts in and sends OTLP batches out.

pub mod config;
pub mod context;
pub mod envoy_flags;
pub mod export;
pub mod hex;
pub mod http_span;
pub mod ids;
pub mod otlp;
pub mod propagation;
pub mod resource;
pub mod route;
pub mod sampling;
pub mod short_compare;
pub mod short_copy;
pub mod span;
pub mod span_facts;
pub mod traceparent_probe;
pub mod tracer;

#[cfg(target_arch = "wasm32")]
mod wasm;

// The module's allocator; natively, only its tests use it.
#[cfg(any(target_arch = "wasm32", test))]
mod size_classes;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: size_classes::SizeClasses<std::alloc::System> =
    size_classes::SizeClasses::new(std::alloc::System);
