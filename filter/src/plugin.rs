//! Everything a plugin derives from its configuration, settled once when it is configured and
//! shared read-only by its streams: the tracer, the span settings, the batch encoder, and the
//! per-request admission rules (which spans are recorded, which requests count as what).

use crate::config::{resolve_custom_tags, Config, Direction, MatchMode};
use crate::context::Format;
use crate::otlp::{BatchEncoder, SpanLimits};
use crate::propagation::composite::Propagator;
use crate::propagation::Getter;
use crate::span::record::SpanSettings;
use crate::span::resource::{resource_attributes, NodeInfo};
use crate::span::SpanKind;
use crate::tracer::{SpanStart, Tracer};

pub struct Plugin {
    pub config: Config,
    pub tracer: Tracer,
    /// The kind of span this plugin records, when the configuration names the direction.
    pub kind: Option<SpanKind>,
    pub span: SpanSettings,
    pub encoder: BatchEncoder,
}

/// What a request's start adds to the filter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartCounts {
    pub spans_started: i64,
    pub invalid_context: i64,
    pub outbound_without_context: i64,
}

impl Plugin {
    /// `env` answers the environment variables `customTags` name.
    pub fn new(config: Config, node: &NodeInfo, env: &dyn Fn(&str) -> Option<String>) -> Plugin {
        let kind = match config.direction {
            Direction::Inbound => Some(SpanKind::Server),
            Direction::Outbound => Some(SpanKind::Client),
            Direction::Auto => None,
        };
        let custom = resolve_custom_tags(&config.custom_tags, env);
        let encoder = BatchEncoder::new(
            &resource_attributes(&config, node),
            "sidetrace",
            env!("CARGO_PKG_VERSION"),
        );
        let tracer = Tracer {
            propagator: Propagator::new(&config.extract, &config.inject),
            sampler: config.sampler.clone(),
            trust_incoming: config.trust_incoming_context,
            write_threshold: config.write_sampling_threshold,
            xray_trace_ids: config.inject.contains(&Format::XRay),
            forward_unsampled_callers: !config.record_unsampled.is_on(),
        };
        let span = SpanSettings {
            record_query: config.record_query,
            fixed_tags: custom.fixed,
            header_tags: custom.from_headers,
            baggage_attributes: config
                .baggage_attributes
                .iter()
                .map(|key| (key.clone(), format!("baggage.{key}")))
                .collect(),
            limits: SpanLimits {
                max_value_len: config.max_tag_length,
                max_attributes: config.max_attributes,
            },
        };
        Plugin {
            kind,
            span,
            encoder,
            tracer,
            config,
        }
    }

    /// Whether spans of `kind` are recorded (Telemetry API `match.mode`, `disableSpanReporting`).
    pub fn records(&self, kind: SpanKind) -> bool {
        if self.config.disable_span_reporting {
            return false;
        }
        match self.config.match_.mode {
            MatchMode::ClientAndServer => true,
            MatchMode::Client => kind == SpanKind::Client,
            MatchMode::Server => kind == SpanKind::Server,
        }
    }

    /// Whether a request's start needs its span's kind: only to apply `match.mode`. Otherwise
    /// the kind waits for the end, where it is read with the span's other facts, and a request
    /// that records no span reads nothing: with `direction: auto`, an outbound request without
    /// context is counted only when its span is recorded.
    pub fn needs_kind_at_start(&self) -> bool {
        let records_every_kind = self.config.disable_span_reporting
            || self.config.match_.mode == MatchMode::ClientAndServer;
        self.kind.is_none() && !records_every_kind
    }

    /// Whether the request's target (`:path`, query string and all) is one not to trace. The
    /// header is looked up only when some path is excluded.
    pub fn is_excluded(&self, request: &impl Getter) -> bool {
        if self.config.exclude_paths.is_empty() {
            return false;
        }
        let path = crate::span::http::path_of(request.get(":path").unwrap_or("/"));
        self.config
            .exclude_paths
            .iter()
            .any(|excluded| excluded == path)
    }

    /// Whether the request's span is recorded if sampled (`kind` `None`: left to the end, when
    /// every kind is recorded), and what its start adds to the counters. `unreadable` counts
    /// headers the host held that were not text.
    pub fn admit(
        &self,
        start: &SpanStart,
        kind: Option<SpanKind>,
        excluded: bool,
        unreadable: u32,
    ) -> (bool, StartCounts) {
        let recorded = !excluded
            && match kind {
                Some(kind) => self.records(kind),
                None => !self.config.disable_span_reporting,
            };
        let without_context = start.incoming.context.is_none();
        let counts = StartCounts {
            spans_started: recorded as i64,
            invalid_context: i64::from(start.incoming.invalid) + i64::from(unreadable),
            outbound_without_context: (without_context && kind == Some(SpanKind::Client)) as i64,
        };
        (recorded, counts)
    }
}
