//! The one span-context type every propagation format reads into and writes from.

use crate::hex;
use std::fmt;

/// 128-bit trace id. All-zero is invalid in every format.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// 64-bit span id. All-zero is invalid in every format.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub const INVALID: TraceId = TraceId([0; 16]);

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::encode_into(&self.0, &mut out);
        out
    }

    /// Parses exactly 32 hex digits; `lowercase_only` per W3C.
    pub fn from_hex(text: &str, lowercase_only: bool) -> Option<TraceId> {
        let mut id = [0u8; 16];
        hex::decode_into(text.as_bytes(), &mut id, lowercase_only)?;
        Some(TraceId(id)).filter(TraceId::is_valid)
    }

    /// With `epoch_secs`, the id with its first 4 bytes the epoch seconds X-Ray requires.
    pub fn stamped(mut self, epoch_secs: Option<u32>) -> TraceId {
        if let Some(secs) = epoch_secs {
            self.0[..4].copy_from_slice(&secs.to_be_bytes());
        }
        self
    }

    /// The lowest 56 bits: the randomness OTel consistent probability sampling reads.
    pub fn random_bits_56(&self) -> u64 {
        let mut low = [0u8; 8];
        low[1..].copy_from_slice(&self.0[9..]);
        u64::from_be_bytes(low)
    }
}

impl SpanId {
    pub const INVALID: SpanId = SpanId([0; 8]);

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }

    /// 16 lowercase hex digits.
    pub fn to_hex(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        hex::encode_into(&self.0, &mut out);
        out
    }

    pub fn from_hex(text: &str, lowercase_only: bool) -> Option<SpanId> {
        let mut id = [0u8; 8];
        hex::decode_into(text.as_bytes(), &mut id, lowercase_only)?;
        Some(SpanId(id)).filter(SpanId::is_valid)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(hex::as_str(&self.to_hex()))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(hex::as_str(&self.to_hex()))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A caller's sampling decision. `Deferred` is B3 without a sampled field and X-Ray `Sampled=?`:
/// the caller left the decision to us, which is not the same as "not sampled".
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Sampling {
    Sampled,
    NotSampled,
    #[default]
    Deferred,
}

impl Sampling {
    pub fn is_sampled(self) -> bool {
        self == Sampling::Sampled
    }
}

/// Propagation formats, named as in `OTEL_PROPAGATORS`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Format {
    TraceContext,
    Baggage,
    B3,
    B3Multi,
    Jaeger,
    XRay,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::TraceContext,
        Format::Baggage,
        Format::B3,
        Format::B3Multi,
        Format::Jaeger,
        Format::XRay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::TraceContext => "tracecontext",
            Format::Baggage => "baggage",
            Format::B3 => "b3",
            Format::B3Multi => "b3multi",
            Format::Jaeger => "jaeger",
            Format::XRay => "xray",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|format| format.name() == name)
    }
}

/// W3C `tracestate`, kept as its validated, comma-joined serialization; empty means absent.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct TraceState(String);

impl TraceState {
    pub fn new(serialized: &str) -> Self {
        TraceState(serialized.to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for TraceState {
    fn from(serialized: String) -> Self {
        TraceState(serialized)
    }
}

/// Everything one hop needs to continue a trace.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampling: Sampling,
    /// B3 `d` / `X-B3-Flags: 1`, Jaeger flag 0x02. Debug implies sampled.
    pub debug: bool,
    /// W3C Trace Context Level 2 random flag (0x02): the trace id's low 56 bits are random.
    pub random: bool,
    pub trace_state: TraceState,
    /// The format this context was read from (or the first injected format, for a new root).
    pub origin: Format,
    /// X-Ray header fields other than Root/Parent/Sampled (e.g. `Lineage=...`), carried verbatim
    /// as `;`-joined `key=value` pairs so re-injection keeps them. Empty when none.
    pub xray_extra: String,
}

impl SpanContext {
    /// A context with the given ids and decision and nothing else.
    pub fn new(trace_id: TraceId, span_id: SpanId, sampling: Sampling, origin: Format) -> Self {
        SpanContext {
            trace_id,
            span_id,
            sampling,
            debug: false,
            random: false,
            trace_state: TraceState::default(),
            origin,
            xray_extra: String::new(),
        }
    }

    pub fn is_valid(&self) -> bool {
        self.trace_id.is_valid() && self.span_id.is_valid()
    }

    pub fn is_sampled(&self) -> bool {
        self.debug || self.sampling.is_sampled()
    }

    /// The same trace continued by a new span: ids and decision change, carried fields stay.
    pub fn child(&self, span_id: SpanId, sampling: Sampling) -> SpanContext {
        SpanContext {
            span_id,
            sampling,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_print() {
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736", true).unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(TraceId::from_hex("00000000000000000000000000000000", true).is_none());
        assert!(TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736", true).is_none());
        assert!(TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736", false).is_some());
        assert_eq!(trace.random_bits_56(), 0xce929d0e0e4736);
        assert!(SpanId::from_hex("0000000000000000", true).is_none());
        assert_eq!(
            SpanId::from_hex("00f067aa0ba902b7", true)
                .unwrap()
                .to_string(),
            "00f067aa0ba902b7"
        );
    }

    #[test]
    fn format_names_round_trip() {
        for format in Format::ALL {
            assert_eq!(Format::from_name(format.name()), Some(format));
        }
        assert_eq!(Format::from_name("zipkin"), None);
    }
}
