//! The filter's configuration: Envoy's `configuration` StringValue or Istio's WasmPlugin
//! `pluginConfig`, parsed once in `on_configure` into typed, validated values. Names follow
//! Istio's camelCase; unknown fields are rejected so a typo never silently does nothing.

mod custom_tags;
mod document;
mod error;
mod validate;
mod values;

use crate::context::Format;
use crate::sampling::Sampler;
pub use custom_tags::{resolve_custom_tags, CustomTagValues, HeaderTag};
pub use error::ConfigError;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Auto,
    Inbound,
    Outbound,
}

/// Telemetry API `match.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchMode {
    #[default]
    ClientAndServer,
    Client,
    Server,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Match {
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

#[derive(Debug, Clone, PartialEq)]
pub struct Collector {
    pub cluster: String,
    pub authority: Option<String>,
    pub timeout_ms: u64,
    /// gRPC metadata sent with every export, in the order configured.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub max_export_batch_size: usize,
    pub scheduled_delay_ms: u64,
    pub max_queue_size: usize,
    pub max_concurrent_exports: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_export_batch_size: 512,
            scheduled_delay_ms: 1000,
            // 2048 (the OTel SDK's default) holds ~85 ms of spans at 24,000/s: a collector
            // pause longer than that dropped spans in the export benchmark; 4096 did not, for
            // 1.3-1.6 MB per worker when full.
            max_queue_size: 4096,
            // Export throughput is in-flight batches over the collector's round trip: four
            // batches of 512 keep 20,000 spans/s per worker moving through a collector answering
            // within 100 ms.
            max_concurrent_exports: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub max_attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_backoff_ms: 500,
            max_backoff_ms: 5000,
            max_attempts: 5,
        }
    }
}

/// `propagation.extract` when unset: every format sidetrace reads.
pub const DEFAULT_EXTRACT: [Format; 6] = [
    Format::TraceContext,
    Format::Baggage,
    Format::B3,
    Format::B3Multi,
    Format::XRay,
    Format::Jaeger,
];
/// `propagation.inject` when unset.
pub const DEFAULT_INJECT: [Format; 3] = [Format::TraceContext, Format::Baggage, Format::B3Multi];

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
    /// and two more attributes in every span's facts.
    pub record_body_sizes: bool,
    /// Trace id, span id and decision as filter state for access logs: three host calls per
    /// request, worth paying only where the log format prints them.
    pub publish_filter_state: bool,
    pub max_tag_length: usize,
    pub max_attributes: usize,
    pub trust_incoming_context: bool,
    pub baggage_attributes: Vec<String>,
    pub write_sampling_threshold: bool,
    pub record_unsampled: RecordUnsampled,
}

/// Spans of unsampled requests recorded all the same, when they failed or were slow: head
/// sampling decides before anyone knows how a request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordUnsampled {
    /// A SERVER span answered 5xx; a CLIENT span answered 5xx or failed without an answer.
    pub on_error: bool,
    /// Any span that lasted longer; 0 is off.
    pub slower_than_ms: u64,
}

impl RecordUnsampled {
    pub fn is_on(&self) -> bool {
        self.on_error || self.slower_than_ms > 0
    }
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(error::invalid(
                "collector.cluster",
                "is required (the configuration is empty)",
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let document: document::Document =
            serde_path_to_error::deserialize(&mut deserializer).map_err(error::from_serde)?;
        deserializer
            .end()
            .map_err(|trailing| error::invalid(error::ROOT, trailing.to_string()))?;
        let config = document.into_config()?;
        config.validate()?;
        Ok(config)
    }

    pub fn sampler(&self) -> Sampler {
        self.sampler.clone()
    }
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
            config.collector.headers,
            [("x-scope-orgid".to_string(), "tenant-a".to_string())]
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
            (512, 4096)
        );
        assert_eq!(config.retry, Retry::default());
        assert_eq!((config.max_tag_length, config.max_attributes), (256, 128));
        assert!(config.trust_incoming_context);
        assert!(config.exclude_paths.is_empty());
        assert!(!config.record_query && !config.write_sampling_threshold);
        assert!(!config.record_body_sizes && !config.publish_filter_state);
        assert!(!config.record_unsampled.is_on(), "off unless asked for");
    }

    #[test]
    fn record_unsampled_is_on_when_either_trigger_is_set() {
        // (document, on_error, slower_than_ms)
        let cases = [
            (r#"{"onError":true}"#, true, 0),
            (r#"{"slowerThanMs":2000}"#, false, 2000),
            (r#"{"onError":true,"slowerThanMs":2e3}"#, true, 2000),
            (r#"{"onError":false,"slowerThanMs":0}"#, false, 0),
            ("{}", false, 0),
        ];
        for (document, on_error, slower_than_ms) in cases {
            let json = format!(r#"{{"collector":{{"cluster":"c"}},"recordUnsampled":{document}}}"#);
            let record = Config::from_json(json.as_bytes()).unwrap().record_unsampled;
            assert_eq!(
                record,
                RecordUnsampled {
                    on_error,
                    slower_than_ms
                },
                "{document}"
            );
            assert_eq!(record.is_on(), on_error || slower_than_ms > 0, "{document}");
        }
        let error = Config::from_json(
            br#"{"collector":{"cluster":"c"},"recordUnsampled":{"onErrors":true}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`recordUnsampled.onErrors`"), "{error}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("", "`collector.cluster`: is required"),
            ("{}", "`collector`: is required"),
            (r#"{"collector":{}}"#, "`collector.cluster`: is required"),
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
                "`customTags.t.literal.value`: is required",
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
                r#"{"collector":{"cluster":"c"},"traceIdsFromRequestIds":false}"#,
                "`traceIdsFromRequestIds`: unknown field `traceIdsFromRequestIds`, expected one of",
            ),
            (
                r#"{"collector":{"cluster":"c"},"responseHeaders":{"traceresponse":true}}"#,
                "`responseHeaders`: unknown field `responseHeaders`, expected one of",
            ),
            (
                r#"{"collector":{"cluster":"c"},"batch":{"maxQueueSize":512.5}}"#,
                "`batch.maxQueueSize`: invalid type: floating point `512.5`, expected a whole number",
            ),
            (
                r#"{"collector":{"cluster":"c"},"batch":{"maxQueueSize":-1}}"#,
                "`batch.maxQueueSize`: invalid type: integer `-1`, expected a whole number",
            ),
            (
                r#"{"collector":{"cluster":"c","headers":{"k":"1","k":"2"}}}"#,
                "`collector.headers`: duplicate key \"k\"",
            ),
            (
                r#"{"collector":{"cluster":"c"},"recordQuery":true,"recordQuery":false}"#,
                "`(root)`: duplicate field `recordQuery`",
            ),
            (
                r#"{"collector":{"cluster":"c","headers":{"a":"b" "c":"d"}}}"#,
                "`collector.headers`: expected `,` or `}` at line 1 column 48",
            ),
            (
                r#"{"collector":{"cluster":"c"}} {}"#,
                "`(root)`: trailing characters at line 1 column 31",
            ),
            (
                r#"{"collector":{"cluster":"c"},"retry":{"initialBackoffMs":100,"maxBackoffMs":50}}"#,
                "`retry.maxBackoffMs`: must be at least 100, got 50",
            ),
            (
                r#"{"collector":{"cluster":"c","headers":{"a\nb":"x"}}}"#,
                "`collector.headers.a\\nb`: must be a lowercase header name",
            ),
            (
                r#"{"collector":{"cluster":"c"},"randomSamplingPercentage":1e501}"#,
                "`randomSamplingPercentage`: number out of range",
            ),
            (
                r#"{"collector":{"cluster":"c"},"batch":{"maxQueueSize":1e501}}"#,
                "`batch.maxQueueSize`: number out of range",
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
    fn whole_numbers_may_be_doubles_and_null_means_unset() {
        let config = Config::from_json(
            br#"{"collector": {"cluster": "otel", "timeoutMs": 2.5e3, "authority": null},
                 "batch": {"maxExportBatchSize": 512.0, "maxQueueSize": 5e3, "scheduledDelayMs": null},
                 "direction": null, "customTags": null, "randomSamplingPercentage": 12.34}"#,
        )
        .unwrap();
        assert_eq!(config.collector.timeout_ms, 2500);
        assert_eq!(config.collector.authority, None);
        assert_eq!(
            (
                config.batch.max_export_batch_size,
                config.batch.max_queue_size,
                config.batch.scheduled_delay_ms
            ),
            (512, 5000, 1000)
        );
        assert_eq!(config.direction, Direction::Auto);
        assert!(config.custom_tags.is_empty());
        assert_eq!(config.sampler.percentage(), 12.34);
    }

    #[test]
    fn map_members_keep_the_document_order() {
        let config = Config::from_json(
            br#"{"collector": {"cluster": "otel", "headers": {"x-b": "1", "x-a": "2"}},
                 "resourceAttributes": {"z": "1", "a": "2"}}"#,
        )
        .unwrap();
        let keys = |pairs: &[(String, String)]| -> Vec<String> {
            pairs.iter().map(|(key, _)| key.clone()).collect()
        };
        assert_eq!(keys(&config.collector.headers), ["x-b", "x-a"]);
        assert_eq!(keys(&config.resource_attributes), ["z", "a"]);
    }

    #[test]
    fn custom_tags_resolve_once_except_headers() {
        let config = Config::from_json(ISSUE_EXAMPLE.as_bytes()).unwrap();
        let env = |name: &str| (name == "CLUSTER_NAME").then(|| "east-1".to_string());
        let values = resolve_custom_tags(&config.custom_tags, &env);
        assert_eq!(
            values.fixed,
            vec![
                ("env".into(), "production".into()),
                ("cluster".into(), "east-1".into())
            ],
            "in the order configured"
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// A damaged configuration (bytes cut out, or swapped for others) is accepted or refused
        /// with one line naming a field; it never panics.
        #[test]
        fn damaged_configurations_fail_with_one_line(
            cut in 0..ISSUE_EXAMPLE.len(),
            len in 0usize..6,
            replacement in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3),
        ) {
            let mut bytes = ISSUE_EXAMPLE.as_bytes().to_vec();
            let end = (cut + len).min(bytes.len());
            bytes.splice(cut..end, replacement);
            if let Err(error) = Config::from_json(&bytes) {
                let line = error.to_string();
                proptest::prop_assert!(line.starts_with("sidetrace config: `"), "{}", line);
                proptest::prop_assert!(!line.contains('\n') && !line.contains('\r'), "{}", line);
            }
        }
    }
}
