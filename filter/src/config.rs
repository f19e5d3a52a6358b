//! The filter's configuration: Envoy's `configuration` StringValue or Istio's WasmPlugin
//! `pluginConfig`, parsed once in `on_configure` into typed, validated values. Names follow
//! Istio's camelCase; unknown fields are rejected so a typo never silently does nothing.

use crate::context::Format;
use crate::sampling::Sampler;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// One line naming the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sidetrace config: `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Auto,
    Inbound,
    Outbound,
}

/// Telemetry API `match.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchMode {
    #[default]
    ClientAndServer,
    Client,
    Server,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub mode: MatchMode,
}

/// Telemetry API `customTags` entry: exactly one of literal, environment, header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomTag {
    Literal {
        value: String,
    },
    Environment {
        name: String,
        default_value: Option<String>,
    },
    Header {
        name: String,
        default_value: Option<String>,
    },
}

/// `customTags` as written: three optional sources, so "none" and "two" get a clear error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustomTag {
    literal: Option<RawLiteral>,
    environment: Option<RawNamedSource>,
    header: Option<RawNamedSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLiteral {
    value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawNamedSource {
    name: String,
    #[serde(default)]
    default_value: Option<String>,
}

impl RawCustomTag {
    fn into_tag(self, field: &str) -> Result<CustomTag, ConfigError> {
        match (self.literal, self.environment, self.header) {
            (Some(RawLiteral { value }), None, None) => Ok(CustomTag::Literal { value }),
            (None, Some(source), None) => Ok(CustomTag::Environment {
                name: source.name,
                default_value: source.default_value,
            }),
            (None, None, Some(source)) => Ok(CustomTag::Header {
                name: source.name,
                default_value: source.default_value,
            }),
            _ => Err(invalid(
                field,
                "must set exactly one of literal, environment, header",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Propagation {
    #[serde(default = "default_extract")]
    pub extract: Vec<String>,
    #[serde(default = "default_inject")]
    pub inject: Vec<String>,
}

fn default_extract() -> Vec<String> {
    ["tracecontext", "baggage", "b3", "b3multi", "xray", "jaeger"]
        .map(String::from)
        .to_vec()
}

fn default_inject() -> Vec<String> {
    ["tracecontext", "baggage", "b3multi"]
        .map(String::from)
        .to_vec()
}

impl Default for Propagation {
    fn default() -> Self {
        Propagation {
            extract: default_extract(),
            inject: default_inject(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Collector {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    5000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batch {
    #[serde(default = "default_max_export_batch_size")]
    pub max_export_batch_size: usize,
    #[serde(default = "default_scheduled_delay_ms")]
    pub scheduled_delay_ms: u64,
    #[serde(default = "default_max_queue_size")]
    pub max_queue_size: usize,
    #[serde(default = "default_max_concurrent_exports")]
    pub max_concurrent_exports: usize,
}

fn default_max_export_batch_size() -> usize {
    512
}
fn default_scheduled_delay_ms() -> u64 {
    1000
}
fn default_max_queue_size() -> usize {
    2048
}
/// Export throughput is in-flight batches over the collector's round trip: four batches of 512
/// keep 20,000 spans/s per worker moving through a collector answering within 100 ms.
fn default_max_concurrent_exports() -> usize {
    4
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_export_batch_size: default_max_export_batch_size(),
            scheduled_delay_ms: default_scheduled_delay_ms(),
            max_queue_size: default_max_queue_size(),
            max_concurrent_exports: default_max_concurrent_exports(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    5000
}
fn default_max_attempts() -> u32 {
    5
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            max_attempts: default_max_attempts(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseHeaders {
    /// W3C Trace Context Level 2 `traceresponse` on responses.
    #[serde(default)]
    pub traceresponse: bool,
    /// A response header carrying the trace id, e.g. `x-trace-id`.
    #[serde(default)]
    pub trace_id_header: Option<String>,
}

/// The configuration as written, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    direction: Direction,
    #[serde(default, rename = "match")]
    match_: Match,
    #[serde(default = "default_percentage")]
    random_sampling_percentage: f64,
    #[serde(default)]
    disable_span_reporting: bool,
    #[serde(default)]
    custom_tags: BTreeMap<String, RawCustomTag>,
    #[serde(default)]
    propagation: Propagation,
    collector: Collector,
    #[serde(default)]
    batch: Batch,
    #[serde(default)]
    retry: Retry,
    #[serde(default)]
    resource_attributes: BTreeMap<String, String>,
    #[serde(default)]
    exclude_paths: Vec<String>,
    #[serde(default)]
    record_query: bool,
    #[serde(default)]
    record_body_sizes: bool,
    #[serde(default)]
    publish_filter_state: bool,
    #[serde(default = "default_max_tag_length")]
    max_tag_length: usize,
    #[serde(default = "default_max_attributes")]
    max_attributes: usize,
    #[serde(default = "default_true")]
    trust_incoming_context: bool,
    #[serde(default)]
    baggage_attributes: Vec<String>,
    #[serde(default)]
    write_sampling_threshold: bool,
    #[serde(default)]
    response_headers: ResponseHeaders,
}

fn default_percentage() -> f64 {
    1.0
}
fn default_max_tag_length() -> usize {
    256
}
fn default_max_attributes() -> usize {
    128
}
fn default_true() -> bool {
    true
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub service_name: Option<String>,
    pub direction: Direction,
    pub match_: Match,
    pub sampler: Sampler,
    pub disable_span_reporting: bool,
    pub custom_tags: Vec<(String, CustomTag)>,
    pub extract: Vec<Format>,
    pub inject: Vec<Format>,
    pub collector: Collector,
    pub batch: Batch,
    pub retry: Retry,
    pub resource_attributes: Vec<(String, String)>,
    pub exclude_paths: Vec<String>,
    pub record_query: bool,
    /// `http.request.body.size` / `http.response.body.size`: opt-in in the HTTP conventions,
    /// and two property lookups per span.
    pub record_body_sizes: bool,
    /// Trace id, span id and decision as filter state for access logs: three host calls per
    /// request, worth paying only where the log format prints them.
    pub publish_filter_state: bool,
    pub max_tag_length: usize,
    pub max_attributes: usize,
    pub trust_incoming_context: bool,
    pub baggage_attributes: Vec<String>,
    pub write_sampling_threshold: bool,
    pub response_headers: ResponseHeaders,
}

fn formats(field: &str, names: &[String]) -> Result<Vec<Format>, ConfigError> {
    let mut formats = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let format = Format::from_name(name).ok_or_else(|| {
            invalid(
                &format!("{field}[{i}]"),
                format!("unknown format {name:?} (expected one of tracecontext, baggage, b3, b3multi, jaeger, xray)"),
            )
        })?;
        if formats.contains(&format) {
            return Err(invalid(
                &format!("{field}[{i}]"),
                format!("{name:?} is listed twice"),
            ));
        }
        formats.push(format);
    }
    Ok(formats)
}

/// An HTTP header name as Envoy stores it: a lowercase token.
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
        })
}

fn at_least(field: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(invalid(
            field,
            format!("must be at least {min}, got {value}"),
        ));
    }
    Ok(())
}

fn at_most(field: &str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value > max {
        return Err(invalid(
            field,
            format!("must be at most {max}, got {value}"),
        ));
    }
    Ok(())
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid(
                "collector.cluster",
                "is required (the configuration is empty)",
            ));
        }
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|error| {
            let field = crate::json_path::path_at(bytes, error.line(), error.column());
            invalid(&field, strip_position(&error.to_string()))
        })?;
        Config::validate(raw)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let sampler = Sampler::new(raw.random_sampling_percentage)
            .map_err(|reason| invalid("randomSamplingPercentage", reason))?;
        if raw.collector.cluster.trim().is_empty() {
            return Err(invalid("collector.cluster", "must name an Envoy cluster"));
        }
        at_least("collector.timeoutMs", raw.collector.timeout_ms, 1)?;
        at_most("collector.timeoutMs", raw.collector.timeout_ms, 60_000)?;
        for (name, value) in &raw.collector.headers {
            if !valid_header_name(name) {
                return Err(invalid(
                    &format!("collector.headers.{name}"),
                    "must be a lowercase header name",
                ));
            }
            // A CR or LF here would smuggle extra metadata into every export.
            if value.bytes().any(|c| c < 0x20 && c != b'\t' || c == 0x7f) {
                return Err(invalid(
                    &format!("collector.headers.{name}"),
                    "must not contain control characters",
                ));
            }
        }
        let batch = &raw.batch;
        at_least(
            "batch.maxExportBatchSize",
            batch.max_export_batch_size as u64,
            1,
        )?;
        at_least("batch.maxQueueSize", batch.max_queue_size as u64, 1)?;
        at_most("batch.maxQueueSize", batch.max_queue_size as u64, 1 << 20)?;
        at_most(
            "batch.maxExportBatchSize",
            batch.max_export_batch_size as u64,
            batch.max_queue_size as u64,
        )?;
        at_least("batch.scheduledDelayMs", batch.scheduled_delay_ms, 1)?;
        at_least(
            "batch.maxConcurrentExports",
            batch.max_concurrent_exports as u64,
            1,
        )?;
        at_most(
            "batch.maxConcurrentExports",
            batch.max_concurrent_exports as u64,
            64,
        )?;
        at_least("retry.initialBackoffMs", raw.retry.initial_backoff_ms, 1)?;
        at_least(
            "retry.maxBackoffMs",
            raw.retry.max_backoff_ms,
            raw.retry.initial_backoff_ms,
        )?;
        at_least("retry.maxAttempts", raw.retry.max_attempts as u64, 1)?;
        at_least("maxTagLength", raw.max_tag_length as u64, 16)?;
        at_least("maxAttributes", raw.max_attributes as u64, 1)?;
        at_most("maxAttributes", raw.max_attributes as u64, 128)?;
        for (i, path) in raw.exclude_paths.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(invalid(
                    &format!("excludePaths[{i}]"),
                    format!("must start with '/', got {path:?}"),
                ));
            }
        }
        let mut custom_tags = Vec::with_capacity(raw.custom_tags.len());
        for (tag, kind) in raw.custom_tags {
            let field = format!("customTags.{tag}");
            let kind = match kind.into_tag(&field)? {
                CustomTag::Header {
                    name,
                    default_value,
                } => {
                    let name = name.to_ascii_lowercase();
                    if !valid_header_name(&name) {
                        return Err(invalid(
                            &format!("{field}.header.name"),
                            format!("{name:?} is not a header name"),
                        ));
                    }
                    CustomTag::Header {
                        name,
                        default_value,
                    }
                }
                CustomTag::Environment {
                    name,
                    default_value,
                } if name.is_empty() => {
                    let _ = default_value;
                    return Err(invalid(
                        &format!("{field}.environment.name"),
                        "must not be empty",
                    ));
                }
                other => other,
            };
            if tag.is_empty() {
                return Err(invalid("customTags", "tag names must not be empty"));
            }
            custom_tags.push((tag, kind));
        }
        let mut response_headers = raw.response_headers;
        if let Some(name) = response_headers.trace_id_header.as_mut() {
            *name = name.to_ascii_lowercase();
            if !valid_header_name(name) {
                return Err(invalid(
                    "responseHeaders.traceIdHeader",
                    format!("{name:?} is not a header name"),
                ));
            }
        }
        Ok(Config {
            service_name: raw.service_name.filter(|s| !s.is_empty()),
            direction: raw.direction,
            match_: raw.match_,
            sampler,
            disable_span_reporting: raw.disable_span_reporting,
            custom_tags,
            extract: formats("propagation.extract", &raw.propagation.extract)?,
            inject: formats("propagation.inject", &raw.propagation.inject)?,
            collector: raw.collector,
            batch: raw.batch,
            retry: raw.retry,
            resource_attributes: raw.resource_attributes.into_iter().collect(),
            exclude_paths: raw.exclude_paths,
            record_query: raw.record_query,
            record_body_sizes: raw.record_body_sizes,
            publish_filter_state: raw.publish_filter_state,
            max_tag_length: raw.max_tag_length,
            max_attributes: raw.max_attributes,
            trust_incoming_context: raw.trust_incoming_context,
            baggage_attributes: raw.baggage_attributes,
            write_sampling_threshold: raw.write_sampling_threshold,
            response_headers,
        })
    }

    pub fn sampler(&self) -> Sampler {
        self.sampler.clone()
    }
}

/// serde_json appends " at line 1 column 23"; the field path already says where.
fn strip_position(reason: &str) -> String {
    match reason.rfind(" at line ") {
        Some(at) => reason[..at].to_string(),
        None => reason.to_string(),
    }
}

/// A header custom tag, resolved per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTag {
    pub tag: String,
    pub header: String,
    pub default_value: Option<String>,
}

/// Literal and environment tags are fixed for the VM's life; header tags vary per request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomTagValues {
    pub fixed: Vec<(String, String)>,
    pub from_headers: Vec<HeaderTag>,
}

pub fn resolve_custom_tags(
    tags: &[(String, CustomTag)],
    env: &dyn Fn(&str) -> Option<String>,
) -> CustomTagValues {
    let mut values = CustomTagValues::default();
    for (tag, kind) in tags {
        match kind {
            CustomTag::Literal { value } => values.fixed.push((tag.clone(), value.clone())),
            CustomTag::Environment {
                name,
                default_value,
            } => {
                if let Some(value) = env(name).or_else(|| default_value.clone()) {
                    values.fixed.push((tag.clone(), value));
                }
            }
            CustomTag::Header {
                name,
                default_value,
            } => values.from_headers.push(HeaderTag {
                tag: tag.clone(),
                header: name.clone(),
                default_value: default_value.clone(),
            }),
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"{
      "serviceName": "checkout",
      "direction": "auto",
      "match": {"mode": "CLIENT_AND_SERVER"},
      "randomSamplingPercentage": 1.0,
      "disableSpanReporting": false,
      "customTags": {
        "env":     {"literal": {"value": "production"}},
        "cluster": {"environment": {"name": "CLUSTER_NAME", "defaultValue": "unknown"}},
        "user":    {"header": {"name": "x-user-id", "defaultValue": "anonymous"}}
      },
      "propagation": {"extract": ["tracecontext", "b3", "b3multi", "xray", "jaeger"], "inject": ["tracecontext", "b3multi"]},
      "collector": {"cluster": "outbound|4317||otel-collector.monitoring.svc.cluster.local",
                    "authority": "otel-collector.monitoring.svc.cluster.local", "timeoutMs": 5000,
                    "headers": {"x-scope-orgid": "tenant-a"}},
      "batch": {"maxExportBatchSize": 512, "scheduledDelayMs": 1000, "maxQueueSize": 2048},
      "resourceAttributes": {"deployment.environment": "production"},
      "excludePaths": ["/health", "/healthz", "/readyz", "/livez", "/metrics"]
    }"#;

    #[test]
    fn the_documented_example_parses() {
        let config = Config::from_json(ISSUE_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(config.service_name.as_deref(), Some("checkout"));
        assert_eq!(
            config.extract,
            [
                Format::TraceContext,
                Format::B3,
                Format::B3Multi,
                Format::XRay,
                Format::Jaeger
            ]
        );
        assert_eq!(config.inject, [Format::TraceContext, Format::B3Multi]);
        assert_eq!(
            config
                .collector
                .headers
                .get("x-scope-orgid")
                .map(String::as_str),
            Some("tenant-a")
        );
        assert_eq!(config.custom_tags.len(), 3);
        assert_eq!(config.exclude_paths.len(), 5);
        assert_eq!(config.sampler.percentage(), 1.0);
    }

    #[test]
    fn defaults_for_a_minimal_config() {
        let config = Config::from_json(br#"{"collector":{"cluster":"otel"}}"#).unwrap();
        assert_eq!(config.direction, Direction::Auto);
        assert_eq!(config.match_.mode, MatchMode::ClientAndServer);
        assert_eq!(config.sampler.percentage(), 1.0);
        assert!(!config.disable_span_reporting);
        assert_eq!(config.extract.len(), 6);
        assert_eq!(
            config.inject,
            [Format::TraceContext, Format::Baggage, Format::B3Multi]
        );
        assert_eq!(config.collector.timeout_ms, 5000);
        assert_eq!(config.collector.authority, None);
        assert_eq!(config.batch, Batch::default());
        assert_eq!(
            (
                config.batch.max_export_batch_size,
                config.batch.max_queue_size
            ),
            (512, 2048)
        );
        assert_eq!(config.retry, Retry::default());
        assert_eq!((config.max_tag_length, config.max_attributes), (256, 128));
        assert!(config.trust_incoming_context);
        assert!(config.exclude_paths.is_empty());
        assert!(!config.record_query && !config.write_sampling_threshold);
        assert!(!config.record_body_sizes && !config.publish_filter_state);
        assert_eq!(config.response_headers, ResponseHeaders::default());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("", "`collector.cluster`: is required"),
            ("{}", "missing field `collector`"),
            (
                r#"{"collector":{}}"#,
                "`collector`: missing field `cluster`",
            ),
            (
                r#"{"collector":{"cluster":" "}}"#,
                "`collector.cluster`: must name an Envoy cluster",
            ),
            (
                r#"{"collector":{"cluster":"c"},"colector":1}"#,
                "unknown field `colector`",
            ),
            (
                r#"{"collector":{"cluster":"c","tls":true}}"#,
                "`collector.tls`: unknown field `tls`",
            ),
            (
                r#"{"collector":{"cluster":"c"},"randomSamplingPercentage":101}"#,
                "`randomSamplingPercentage`: must be between 0 and 100, got 101",
            ),
            (
                r#"{"collector":{"cluster":"c"},"randomSamplingPercentage":"50"}"#,
                "`randomSamplingPercentage`: invalid type",
            ),
            (
                r#"{"collector":{"cluster":"c"},"batch":{"maxQueueSize":0}}"#,
                "`batch.maxQueueSize`: must be at least 1, got 0",
            ),
            (
                r#"{"collector":{"cluster":"c"},"batch":{"maxQueueSize":10}}"#,
                "`batch.maxExportBatchSize`: must be at most 10, got 512",
            ),
            (
                r#"{"collector":{"cluster":"c"},"propagation":{"inject":["tracecontext","zipkin"]}}"#,
                "`propagation.inject[1]`: unknown format \"zipkin\"",
            ),
            (
                r#"{"collector":{"cluster":"c"},"propagation":{"extract":["b3","b3"]}}"#,
                "`propagation.extract[1]`: \"b3\" is listed twice",
            ),
            (
                r#"{"collector":{"cluster":"c"},"direction":"sideways"}"#,
                "`direction`: unknown variant `sideways`",
            ),
            (
                r#"{"collector":{"cluster":"c"},"match":{"mode":"BOTH"}}"#,
                "`match.mode`: unknown variant `BOTH`",
            ),
            (
                r#"{"collector":{"cluster":"c"},"customTags":{"t":{"literal":{"value":"v"},"header":{"name":"h"}}}}"#,
                "`customTags.t`: must set exactly one of literal, environment, header",
            ),
            (
                r#"{"collector":{"cluster":"c"},"customTags":{"t":{}}}"#,
                "`customTags.t`: must set exactly one of literal, environment, header",
            ),
            (
                r#"{"collector":{"cluster":"c"},"customTags":{"t":{"literal":{"value":"v"}}},"batch":{"maxQueueSize":"x"}}"#,
                "`batch.maxQueueSize`: invalid type",
            ),
            (
                r#"{"collector":{"cluster":"c"},"customTags":{"t":{"header":{"name":"bad header"}}}}"#,
                "`customTags.t.header.name`",
            ),
            (
                r#"{"collector":{"cluster":"c"},"customTags":{"t":{"literal":{}}}}"#,
                "`customTags.t.literal`: missing field `value`",
            ),
            (
                r#"{"collector":{"cluster":"c"},"excludePaths":["health"]}"#,
                "`excludePaths[0]`: must start with '/'",
            ),
            (
                r#"{"collector":{"cluster":"c"},"maxAttributes":500}"#,
                "`maxAttributes`: must be at most 128, got 500",
            ),
            (
                r#"{"collector":{"cluster":"c","timeoutMs":0}}"#,
                "`collector.timeoutMs`: must be at least 1, got 0",
            ),
            (
                r#"{"collector":{"cluster":"c","headers":{"Bad Name":"x"}}}"#,
                "`collector.headers.Bad Name`",
            ),
            (
                r#"{"collector":{"cluster":"c","headers":{"x-org":"a\r\nx-evil: 1"}}}"#,
                "`collector.headers.x-org`: must not contain control characters",
            ),
            (
                r#"{"collector":{"cluster":"c"},"responseHeaders":{"traceIdHeader":"x trace"}}"#,
                "`responseHeaders.traceIdHeader`",
            ),
            (
                r#"{"collector":{"cluster":"c"},"retry":{"initialBackoffMs":100,"maxBackoffMs":50}}"#,
                "`retry.maxBackoffMs`: must be at least 100, got 50",
            ),
            ("[1,2]", "invalid type"),
            ("{not json", "key must be a string"),
        ];
        for (json, expected) in cases {
            let error = Config::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(error.starts_with("sidetrace config: `"), "{json}: {error}");
            assert!(
                error.contains(expected),
                "{json}:\n  got      {error}\n  expected {expected}"
            );
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn custom_tags_resolve_once_except_headers() {
        let config = Config::from_json(ISSUE_EXAMPLE.as_bytes()).unwrap();
        let env = |name: &str| (name == "CLUSTER_NAME").then(|| "east-1".to_string());
        let values = resolve_custom_tags(&config.custom_tags, &env);
        assert_eq!(
            values.fixed,
            vec![
                ("cluster".into(), "east-1".into()),
                ("env".into(), "production".into())
            ]
        );
        assert_eq!(
            values.from_headers,
            vec![HeaderTag {
                tag: "user".into(),
                header: "x-user-id".into(),
                default_value: Some("anonymous".into())
            }]
        );
        let values = resolve_custom_tags(&config.custom_tags, &|_| None);
        assert!(
            values.fixed.contains(&("cluster".into(), "unknown".into())),
            "falls back to defaultValue"
        );
        let tags = vec![(
            "t".to_string(),
            CustomTag::Environment {
                name: "MISSING".into(),
                default_value: None,
            },
        )];
        assert!(
            resolve_custom_tags(&tags, &|_| None).fixed.is_empty(),
            "no value, no tag"
        );
    }
}
