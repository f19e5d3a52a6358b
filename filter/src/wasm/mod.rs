//! The proxy-wasm glue: a root context per plugin instance parses the configuration once and
//! owns the exporter; each HTTP stream gets an `Rc` of both. Everything it decides is delegated
//! to the pure modules of the crate.

mod abi;
mod exports;
mod host;
mod metrics;
mod plugin;
mod root;
mod stream;
