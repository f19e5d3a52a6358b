//! The configuration as written, and `Config` from it. Every member is optional, so that `null`
//! means unset as it does in the protobuf Struct Istio hands over, and unset members take their
//! defaults in one place: serde can give a missing member its field's default, but has no way
//! to do the same for a `null` one. Each object says it expects "an object", where serde would
//! otherwise name the Rust struct in a type error.

use super::error::{invalid, ConfigError};
use super::values::{Pairs, Percentage, Whole, COUNT_MAX};
use super::*;

/// Istio's default when `randomSamplingPercentage` is unset.
const DEFAULT_SAMPLING_PERCENTAGE: f64 = 1.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub struct Document {
    service_name: Option<String>,
    direction: Option<Direction>,
    #[serde(rename = "match")]
    match_: Option<MatchDocument>,
    random_sampling_percentage: Option<Percentage>,
    disable_span_reporting: Option<bool>,
    custom_tags: Option<Pairs<CustomTagDocument>>,
    propagation: Option<PropagationDocument>,
    collector: Option<CollectorDocument>,
    batch: Option<BatchDocument>,
    retry: Option<RetryDocument>,
    resource_attributes: Option<Pairs<String>>,
    exclude_paths: Option<Vec<String>>,
    record_query: Option<bool>,
    record_body_sizes: Option<bool>,
    publish_filter_state: Option<bool>,
    max_tag_length: Option<Whole<16, COUNT_MAX>>,
    max_attributes: Option<Whole<1, 128>>,
    trust_incoming_context: Option<bool>,
    baggage_attributes: Option<Vec<String>>,
    write_sampling_threshold: Option<bool>,
    record_unsampled: Option<RecordUnsampledDocument>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
struct MatchDocument {
    mode: Option<MatchMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
struct CustomTagDocument {
    literal: Option<LiteralDocument>,
    environment: Option<SourceDocument>,
    header: Option<SourceDocument>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
struct LiteralDocument {
    value: Option<String>,
}

/// `{"name": ..., "defaultValue": ...}` of an environment or header custom tag.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct SourceDocument {
    name: Option<String>,
    default_value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "an object")]
struct PropagationDocument {
    extract: Option<Vec<String>>,
    inject: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct CollectorDocument {
    cluster: Option<String>,
    authority: Option<String>,
    timeout_ms: Option<Whole<1, 60_000>>,
    headers: Option<Pairs<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct BatchDocument {
    max_export_batch_size: Option<Whole<1, { 1 << 20 }>>,
    scheduled_delay_ms: Option<Whole<1, { u64::MAX }>>,
    max_queue_size: Option<Whole<1, { 1 << 20 }>>,
    max_concurrent_exports: Option<Whole<1, 64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct RetryDocument {
    initial_backoff_ms: Option<Whole<1, { u64::MAX }>>,
    max_backoff_ms: Option<Whole<0, { u64::MAX }>>,
    max_attempts: Option<Whole<1, { u32::MAX as u64 }>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
struct RecordUnsampledDocument {
    on_error: Option<bool>,
    slower_than_ms: Option<Whole<0, { u64::MAX }>>,
}

/// The number, or `default` when unset; counts are bounded by `COUNT_MAX`, so none truncates.
fn whole_or<const MIN: u64, const MAX: u64, T: TryFrom<u64>>(
    number: Option<Whole<MIN, MAX>>,
    default: T,
) -> T {
    number
        .and_then(|n| T::try_from(n.0).ok())
        .unwrap_or(default)
}

impl Document {
    /// `Config` with defaults for what is unset; `Config::validate` checks the values.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let collector = self
            .collector
            .ok_or_else(|| invalid("collector", "is required"))?;
        let propagation = self.propagation.unwrap_or_default();
        let (batch, default_batch) = (self.batch.unwrap_or_default(), Batch::default());
        let (retry, default_retry) = (self.retry.unwrap_or_default(), Retry::default());
        let record_unsampled = self.record_unsampled.unwrap_or_default();
        Ok(Config {
            service_name: self.service_name.filter(|name| !name.is_empty()),
            direction: self.direction.unwrap_or_default(),
            match_: Match {
                mode: self.match_.and_then(|m| m.mode).unwrap_or_default(),
            },
            sampler: match self.random_sampling_percentage {
                Some(Percentage(sampler)) => sampler,
                None => Sampler::new(DEFAULT_SAMPLING_PERCENTAGE).expect("a valid percentage"),
            },
            disable_span_reporting: self.disable_span_reporting.unwrap_or(false),
            custom_tags: (self.custom_tags.map(|tags| tags.0).unwrap_or_default())
                .into_iter()
                .map(|(name, tag)| Ok((name.clone(), tag.into_custom_tag(&name)?)))
                .collect::<Result<_, ConfigError>>()?,
            extract: formats("propagation.extract", propagation.extract, &DEFAULT_EXTRACT)?,
            inject: formats("propagation.inject", propagation.inject, &DEFAULT_INJECT)?,
            collector: Collector {
                cluster: (collector.cluster)
                    .ok_or_else(|| invalid("collector.cluster", "is required"))?,
                authority: collector.authority,
                timeout_ms: whole_or(collector.timeout_ms, 5000),
                headers: collector.headers.map(|pairs| pairs.0).unwrap_or_default(),
            },
            batch: Batch {
                max_export_batch_size: whole_or(
                    batch.max_export_batch_size,
                    default_batch.max_export_batch_size,
                ),
                scheduled_delay_ms: whole_or(
                    batch.scheduled_delay_ms,
                    default_batch.scheduled_delay_ms,
                ),
                max_queue_size: whole_or(batch.max_queue_size, default_batch.max_queue_size),
                max_concurrent_exports: whole_or(
                    batch.max_concurrent_exports,
                    default_batch.max_concurrent_exports,
                ),
            },
            retry: Retry {
                initial_backoff_ms: whole_or(
                    retry.initial_backoff_ms,
                    default_retry.initial_backoff_ms,
                ),
                max_backoff_ms: whole_or(retry.max_backoff_ms, default_retry.max_backoff_ms),
                max_attempts: whole_or(retry.max_attempts, default_retry.max_attempts),
            },
            resource_attributes: self
                .resource_attributes
                .map(|pairs| pairs.0)
                .unwrap_or_default(),
            exclude_paths: self.exclude_paths.unwrap_or_default(),
            record_query: self.record_query.unwrap_or(false),
            record_body_sizes: self.record_body_sizes.unwrap_or(false),
            publish_filter_state: self.publish_filter_state.unwrap_or(false),
            max_tag_length: whole_or(self.max_tag_length, 256),
            max_attributes: whole_or(self.max_attributes, 128),
            trust_incoming_context: self.trust_incoming_context.unwrap_or(true),
            baggage_attributes: self.baggage_attributes.unwrap_or_default(),
            write_sampling_threshold: self.write_sampling_threshold.unwrap_or(false),
            record_unsampled: RecordUnsampled {
                on_error: record_unsampled.on_error.unwrap_or(false),
                slower_than_ms: whole_or(record_unsampled.slower_than_ms, 0),
            },
        })
    }
}

/// Propagation formats by name; `default` when unset.
fn formats(
    path: &str,
    names: Option<Vec<String>>,
    default: &[Format],
) -> Result<Vec<Format>, ConfigError> {
    let Some(names) = names else {
        return Ok(default.to_vec());
    };
    let format = |(i, name): (usize, String)| {
        Format::from_name(&name).ok_or_else(|| {
            let expected = Format::ALL.map(Format::name).join(", ");
            invalid(
                &format!("{path}[{i}]"),
                format!("unknown format {name:?} (expected one of {expected})"),
            )
        })
    };
    names.into_iter().enumerate().map(format).collect()
}

impl CustomTagDocument {
    /// Telemetry API `customTags` entry: exactly one of literal, environment, header.
    fn into_custom_tag(self, name: &str) -> Result<CustomTag, ConfigError> {
        if name.is_empty() {
            return Err(invalid("customTags", "tag names must not be empty"));
        }
        let path = format!("customTags.{name}");
        let required = |value: Option<String>, field: &str| {
            value.ok_or_else(|| invalid(&format!("{path}.{field}"), "is required"))
        };
        Ok(match (self.literal, self.environment, self.header) {
            (Some(literal), None, None) => CustomTag::Literal {
                value: required(literal.value, "literal.value")?,
            },
            (None, Some(environment), None) => CustomTag::Environment {
                name: required(environment.name, "environment.name")?,
                default_value: environment.default_value,
            },
            (None, None, Some(header)) => CustomTag::Header {
                // Envoy stores header names lowercased.
                name: required(header.name, "header.name")?.to_ascii_lowercase(),
                default_value: header.default_value,
            },
            _ => {
                let reason = "must set exactly one of literal, environment, header";
                return Err(invalid(&path, reason));
            }
        })
    }
}
