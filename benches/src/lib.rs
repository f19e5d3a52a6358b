//! Benchmarks live in `benches/propagation.rs`; this crate has no library code of its own.
