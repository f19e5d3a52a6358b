//! Trace-context propagation formats over a get/set carrier, so the same code runs against the
//! proxy's header map and a plain vector in tests.
//!
//! Every format module exposes the same three items:
//! - `HEADERS`: the lowercase header names the format owns;
//! - `extract(&impl Getter) -> Extracted`;
//! - `inject(&SpanContext, &mut impl Setter)`.
//!
//! `composite` runs them in the configured order; `baggage` is a separate, non-context format.

pub mod b3;
pub mod baggage;
pub mod carrier;
pub mod composite;
pub mod header_block;
pub mod jaeger;
pub mod tracecontext;
pub mod tracestate;
pub mod xray;

pub use carrier::{Getter, Headers, Setter};
pub use header_block::HeaderBlock;

use crate::context::SpanContext;

/// What one format found in a carrier.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Extracted {
    /// None of the format's headers are present.
    Absent,
    /// Headers are present but malformed; the caller counts it and ignores them.
    Invalid,
    /// A sampling decision without ids (B3 `b3: 0`, `X-B3-Sampled` alone).
    DecisionOnly(crate::context::Sampling),
    Valid(SpanContext),
}
