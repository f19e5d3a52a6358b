//! From the document serde read to `Config`: defaults for what is unset, and the checks no
//! single value can make alone (required fields, one field against another, lists without
//! repeats). Each error names its field's path, built here as serde_path_to_error would.

use super::document::*;
use super::error::{invalid, ConfigError, ROOT};
use super::names::{is_header_name, FormatName};
use super::pairs::Pairs;
use super::*;

/// Istio's default when `randomSamplingPercentage` is unset.
const DEFAULT_SAMPLING_PERCENTAGE: f64 = 1.0;

impl Document {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let Some(collector) = self.collector else {
            return Err(invalid("collector", "is required"));
        };
        let sampler = match self.random_sampling_percentage {
            Some(percentage) => percentage.0,
            None => {
                Sampler::new(DEFAULT_SAMPLING_PERCENTAGE).map_err(|reason| invalid(ROOT, reason))?
            }
        };
        let propagation = self.propagation.unwrap_or_default();
        Ok(Config {
            service_name: self.service_name.filter(|name| !name.is_empty()),
            direction: self.direction.unwrap_or_default(),
            match_: Match {
                mode: self.match_.and_then(|m| m.mode).unwrap_or_default(),
            },
            sampler,
            disable_span_reporting: self.disable_span_reporting.unwrap_or(false),
            custom_tags: custom_tags(self.custom_tags)?,
            extract: formats("propagation.extract", propagation.extract, &DEFAULT_EXTRACT)?,
            inject: formats("propagation.inject", propagation.inject, &DEFAULT_INJECT)?,
            collector: collector.validate()?,
            batch: self
                .batch
                .map_or(Ok(Batch::default()), BatchDocument::validate)?,
            retry: self
                .retry
                .map_or(Ok(Retry::default()), RetryDocument::validate)?,
            resource_attributes: self
                .resource_attributes
                .map(|pairs| pairs.0)
                .unwrap_or_default(),
            exclude_paths: self
                .exclude_paths
                .unwrap_or_default()
                .into_iter()
                .map(|prefix| prefix.0)
                .collect(),
            record_query: self.record_query.unwrap_or(false),
            record_body_sizes: self.record_body_sizes.unwrap_or(false),
            publish_filter_state: self.publish_filter_state.unwrap_or(false),
            max_tag_length: self.max_tag_length.map_or(256, |n| n.count()),
            max_attributes: self.max_attributes.map_or(128, |n| n.count()),
            trust_incoming_context: self.trust_incoming_context.unwrap_or(true),
            baggage_attributes: self.baggage_attributes.unwrap_or_default(),
            write_sampling_threshold: self.write_sampling_threshold.unwrap_or(false),
            response_headers: self
                .response_headers
                .map(|headers| ResponseHeaders {
                    traceresponse: headers.traceresponse.unwrap_or(false),
                    trace_id_header: headers.trace_id_header.map(|name| name.0),
                })
                .unwrap_or_default(),
            record_unsampled: self
                .record_unsampled
                .map(|record| RecordUnsampled {
                    on_error: record.on_error.unwrap_or(false),
                    slower_than_ms: record.slower_than_ms.map_or(0, |ms| ms.0),
                })
                .unwrap_or_default(),
        })
    }
}

/// A list of propagation formats, each listed once; `default` when unset.
fn formats(
    path: &str,
    names: Option<Vec<FormatName>>,
    default: &[Format],
) -> Result<Vec<Format>, ConfigError> {
    let Some(names) = names else {
        return Ok(default.to_vec());
    };
    let mut formats = Vec::with_capacity(names.len());
    for (i, FormatName(format)) in names.into_iter().enumerate() {
        if formats.contains(&format) {
            return Err(invalid(
                &format!("{path}[{i}]"),
                format!("{:?} is listed twice", format.name()),
            ));
        }
        formats.push(format);
    }
    Ok(formats)
}

fn custom_tags(
    tags: Option<Pairs<CustomTagDocument>>,
) -> Result<Vec<(String, CustomTag)>, ConfigError> {
    let tags = tags.map(|pairs| pairs.0).unwrap_or_default();
    if tags.iter().any(|(name, _)| name.is_empty()) {
        return Err(invalid("customTags", "tag names must not be empty"));
    }
    tags.into_iter()
        .map(|(name, tag)| {
            let tag = tag.validate(&format!("customTags.{name}"))?;
            Ok((name, tag))
        })
        .collect()
}

/// `value`, or "is required" at `path`.
fn required<T>(value: Option<T>, path: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| invalid(path, "is required"))
}

impl CustomTagDocument {
    fn validate(self, path: &str) -> Result<CustomTag, ConfigError> {
        Ok(match (self.literal, self.environment, self.header) {
            (Some(literal), None, None) => CustomTag::Literal {
                value: required(literal.value, &format!("{path}.literal.value"))?,
            },
            (None, Some(environment), None) => CustomTag::Environment {
                name: required(environment.name, &format!("{path}.environment.name"))?.0,
                default_value: environment.default_value,
            },
            (None, None, Some(header)) => CustomTag::Header {
                name: required(header.name, &format!("{path}.header.name"))?.0,
                default_value: header.default_value,
            },
            _ => {
                return Err(invalid(
                    path,
                    "must set exactly one of literal, environment, header",
                ))
            }
        })
    }
}

impl CollectorDocument {
    fn validate(self) -> Result<Collector, ConfigError> {
        let cluster = required(self.cluster, "collector.cluster")?.0;
        let headers: Vec<(String, String)> = self
            .headers
            .map(|pairs| pairs.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, value.0))
            .collect();
        if let Some((name, _)) = headers.iter().find(|(name, _)| !is_header_name(name)) {
            return Err(invalid(
                &format!("collector.headers.{name}"),
                "must be a lowercase header name",
            ));
        }
        Ok(Collector {
            cluster,
            authority: self.authority,
            timeout_ms: self.timeout_ms.map_or(5000, |n| n.0),
            headers,
        })
    }
}

impl BatchDocument {
    fn validate(self) -> Result<Batch, ConfigError> {
        let defaults = Batch::default();
        let batch = Batch {
            max_export_batch_size: self
                .max_export_batch_size
                .map_or(defaults.max_export_batch_size, |n| n.count()),
            scheduled_delay_ms: self
                .scheduled_delay_ms
                .map_or(defaults.scheduled_delay_ms, |n| n.0),
            max_queue_size: self
                .max_queue_size
                .map_or(defaults.max_queue_size, |n| n.count()),
            max_concurrent_exports: self
                .max_concurrent_exports
                .map_or(defaults.max_concurrent_exports, |n| n.count()),
        };
        if batch.max_export_batch_size > batch.max_queue_size {
            return Err(invalid(
                "batch.maxExportBatchSize",
                format!(
                    "must be at most {}, got {}",
                    batch.max_queue_size, batch.max_export_batch_size
                ),
            ));
        }
        Ok(batch)
    }
}

impl RetryDocument {
    fn validate(self) -> Result<Retry, ConfigError> {
        let defaults = Retry::default();
        let retry = Retry {
            initial_backoff_ms: self
                .initial_backoff_ms
                .map_or(defaults.initial_backoff_ms, |n| n.0),
            max_backoff_ms: self.max_backoff_ms.map_or(defaults.max_backoff_ms, |n| n.0),
            // Bounded to `u32::MAX` by its type in the document.
            max_attempts: self
                .max_attempts
                .map_or(defaults.max_attempts, |n| n.0 as u32),
        };
        if retry.max_backoff_ms < retry.initial_backoff_ms {
            return Err(invalid(
                "retry.maxBackoffMs",
                format!(
                    "must be at least {}, got {}",
                    retry.initial_backoff_ms, retry.max_backoff_ms
                ),
            ));
        }
        Ok(retry)
    }
}
