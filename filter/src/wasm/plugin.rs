//! Everything a plugin instance derives from its configuration, computed once in `on_configure`
//! and shared read-only with every stream.

use super::host;
use crate::config::{Config, Direction, HeaderTag, MatchMode};
use crate::context::Format;
use crate::otlp::{BatchEncoder, SpanLimits};
use crate::propagation::composite::Propagator;
use crate::resource::{self, NodeInfo};
use crate::span::SpanKind;
use crate::span_facts::{self, FactsQuery};
use crate::tracer::Tracer;

pub struct Plugin {
    pub config: Config,
    pub tracer: Tracer,
    /// The kind of span this plugin records, when the listener's direction is known at configure.
    pub kind: Option<SpanKind>,
    pub fixed_tags: Vec<(String, String)>,
    pub header_tags: Vec<HeaderTag>,
    /// `(baggage key, attribute name)` for the baggage keys copied onto spans.
    pub baggage_attributes: Vec<(String, String)>,
    pub limits: SpanLimits,
    pub encoder: BatchEncoder,
    /// The compiled expressions that read a finished span's facts in one host call, one per
    /// `FactsQuery::all`; `None` when the host evaluates no expressions.
    pub facts: Option<[u32; 6]>,
    /// Whether a request's `traceparent` is looked up alone first, its header map read only if
    /// it is sampled (`traceparent_probe`).
    pub probes_traceparent: bool,
    /// Whether every response's facts header is removed by the filter: any name but the one
    /// Envoy drops on its own (`span_facts::NAME_ENVOY_DROPS`).
    pub removes_facts_header: bool,
}

/// Compiles every query's expression, or none: a host that cannot evaluate one cannot be
/// relied on for the others.
fn compile_fact_expressions(body_sizes: bool) -> Option<[u32; 6]> {
    let mut tokens = [0; 6];
    for query in FactsQuery::all(body_sizes) {
        match host::expression_create(&span_facts::expression(&query)) {
            Some(token) => tokens[query.index()] = token,
            None => {
                tokens[..query.index()]
                    .iter()
                    .for_each(|t| host::expression_delete(*t));
                host::log_info(
                    "sidetrace: the host compiles no CEL expressions; \
                     span facts are read one attribute at a time",
                );
                return None;
            }
        }
    }
    Some(tokens)
}

/// Envoy's `xds.listener_direction`: 1 inbound, 2 outbound, 0 unspecified. Read per stream:
/// root contexts don't see it, and one filter config (Istio's ECDS) can serve both directions.
pub fn listener_kind() -> Option<SpanKind> {
    match host::property_int(&["xds", "listener_direction"]) {
        Some(1) => Some(SpanKind::Server),
        Some(2) => Some(SpanKind::Client),
        _ => None,
    }
}

fn node_info() -> NodeInfo {
    let meta = |key: &str| host::property_string(&["xds", "node", "metadata", key]);
    let label_keys = [
        "service.istio.io/canonical-name",
        "service.istio.io/canonical-revision",
        "app",
        "version",
    ];
    let labels = label_keys
        .iter()
        .filter_map(|key| {
            host::property_string(&["xds", "node", "metadata", "LABELS", key])
                .map(|v| (key.to_string(), v))
        })
        .collect();
    NodeInfo {
        name: meta("NAME"),
        namespace: meta("NAMESPACE"),
        workload_name: meta("WORKLOAD_NAME"),
        cluster_id: meta("CLUSTER_ID"),
        mesh_id: meta("MESH_ID"),
        labels,
    }
}

impl Plugin {
    pub fn new(config: Config) -> Plugin {
        let kind = match config.direction {
            Direction::Inbound => Some(SpanKind::Server),
            Direction::Outbound => Some(SpanKind::Client),
            Direction::Auto => listener_kind(),
        };
        let custom = crate::config::resolve_custom_tags(&config.custom_tags, &|name| {
            std::env::var(name).ok()
        });
        let node = node_info();
        let encoder = BatchEncoder::new(
            &resource::resource_attributes(&config, &node),
            "sidetrace",
            env!("CARGO_PKG_VERSION"),
        );
        let tracer = Tracer {
            propagator: Propagator::new(&config.extract, &config.inject),
            sampler: config.sampler(),
            trust_incoming: config.trust_incoming_context,
            write_threshold: config.write_sampling_threshold,
            xray_trace_ids: config.inject.contains(&Format::XRay),
            trace_ids_from_request_ids: config.trace_ids_from_request_ids,
        };
        Plugin {
            kind,
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
            encoder,
            tracer,
            facts: compile_fact_expressions(config.record_body_sizes),
            probes_traceparent: crate::traceparent_probe::applies(&config),
            removes_facts_header: config
                .response_headers
                .facts_header
                .as_deref()
                .is_some_and(span_facts::needs_removal),
            config,
        }
    }

    /// The compiled expression answering `query`.
    pub fn facts_expression(&self, query: &FactsQuery) -> Option<u32> {
        Some(self.facts?[query.index()])
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

    /// Whether spans are recorded, when the answer does not depend on their kind.
    pub fn records_whatever_kind(&self) -> Option<bool> {
        if self.config.disable_span_reporting {
            return Some(false);
        }
        (self.config.match_.mode == MatchMode::ClientAndServer).then_some(true)
    }

    /// Whether a stream may leave its span's kind to be read with its other facts at the end.
    pub fn kind_can_wait(&self) -> bool {
        self.kind.is_none() && self.facts.is_some()
    }

    /// Whether the request's target (`:path`, query string and all) is one not to trace; the
    /// target is asked for only when some paths are excluded.
    pub fn is_excluded<'a>(&self, target: impl FnOnce() -> Option<&'a str>) -> bool {
        if self.config.exclude_paths.is_empty() {
            return false;
        }
        let path = crate::http_span::path_of(target().unwrap_or("/"));
        self.config
            .exclude_paths
            .iter()
            .any(|excluded| excluded == path)
    }
}

/// A reconfigured plugin's expressions would otherwise stay compiled in the host for the VM's
/// life.
impl Drop for Plugin {
    fn drop(&mut self) {
        for token in self.facts.iter().flatten() {
            host::expression_delete(*token);
        }
    }
}
