//! Reads the parsed document into `Config`, section by section: each section takes its known
//! fields, checks them, and names the field in every error.

use super::fields::{self, Fields};
use super::json::{self, Json};
use super::*;

/// A list of propagation format names, each known and listed once.
fn formats(path: &str, value: &Json) -> Result<Vec<Format>, ConfigError> {
    let names = fields::list(path, value, fields::string)?;
    let mut formats = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let element = fields::index_path(path, i);
        let format = Format::from_name(name).ok_or_else(|| {
            invalid(
                &element,
                format!(
                    "unknown format {} (expected one of tracecontext, baggage, b3, b3multi, jaeger, xray)",
                    fields::quoted(name)
                ),
            )
        })?;
        if formats.contains(&format) {
            return Err(invalid(
                &element,
                format!("{} is listed twice", fields::quoted(name)),
            ));
        }
        formats.push(format);
    }
    Ok(formats)
}

/// An HTTP header name as Envoy stores it: a lowercase token.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
        })
}

/// A header name field: lowercased as Envoy stores names, then checked.
fn header_name(path: &str, value: &Json) -> Result<String, ConfigError> {
    let name = fields::string(path, value)?.to_ascii_lowercase();
    if !valid_header_name(&name) {
        return Err(invalid(
            path,
            format!("{} is not a header name", fields::quoted(&name)),
        ));
    }
    Ok(name)
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

/// A whole number in `min..=max`.
fn bounded(min: u64, max: u64) -> impl Fn(&str, &Json) -> Result<u64, ConfigError> {
    move |path, value| {
        let number = fields::integer(path, value, max)?;
        at_least(path, number, min)?;
        Ok(number)
    }
}

/// A count held in a `usize`: bounded so a 32-bit module never truncates it.
fn count(min: u64, max: u64) -> impl Fn(&str, &Json) -> Result<usize, ConfigError> {
    let max = max.min(u32::MAX as u64);
    move |path, value| bounded(min, max)(path, value).map(|n| n as usize)
}

fn sampler(path: &str, value: &Json) -> Result<Sampler, ConfigError> {
    let (percentage, written) = fields::decimal(path, value)?;
    Sampler::new(percentage).map_err(|reason| invalid(path, format!("{reason}, got {written}")))
}

fn collector(path: &str, value: &Json) -> Result<Collector, ConfigError> {
    let mut fields = Fields::of(path, value)?;
    let cluster = fields.require("cluster", fields::string)?;
    if cluster.trim().is_empty() {
        return Err(invalid(
            &fields::child_path(path, "cluster"),
            "must name an Envoy cluster",
        ));
    }
    let authority = fields.get("authority", fields::string)?;
    let timeout_ms = fields.get("timeoutMs", bounded(1, 60_000))?.unwrap_or(5000);
    let headers = fields
        .get("headers", |path, value| {
            fields::map(path, value, |path, value| {
                let text = fields::string(path, value)?;
                // A CR or LF here would smuggle extra metadata into every export.
                if text.bytes().any(|c| c < 0x20 && c != b'\t' || c == 0x7f) {
                    return Err(invalid(path, "must not contain control characters"));
                }
                Ok(text)
            })
        })?
        .unwrap_or_default();
    if let Some((name, _)) = headers.iter().find(|(name, _)| !valid_header_name(name)) {
        return Err(invalid(
            &fields::child_path(&fields::child_path(path, "headers"), name),
            "must be a lowercase header name",
        ));
    }
    fields.finish()?;
    Ok(Collector {
        cluster,
        authority,
        timeout_ms,
        headers,
    })
}

fn batch(path: &str, value: &Json) -> Result<Batch, ConfigError> {
    let defaults = Batch::default();
    let mut fields = Fields::of(path, value)?;
    let max_export_batch_size = fields
        .get("maxExportBatchSize", count(1, 1 << 20))?
        .unwrap_or(defaults.max_export_batch_size);
    let scheduled_delay_ms = fields
        .get("scheduledDelayMs", bounded(1, u64::MAX))?
        .unwrap_or(defaults.scheduled_delay_ms);
    let max_queue_size = fields
        .get("maxQueueSize", count(1, 1 << 20))?
        .unwrap_or(defaults.max_queue_size);
    let max_concurrent_exports = fields
        .get("maxConcurrentExports", count(1, 64))?
        .unwrap_or(defaults.max_concurrent_exports);
    fields.finish()?;
    if max_export_batch_size > max_queue_size {
        return Err(invalid(
            &fields::child_path(path, "maxExportBatchSize"),
            format!("must be at most {max_queue_size}, got {max_export_batch_size}"),
        ));
    }
    Ok(Batch {
        max_export_batch_size,
        scheduled_delay_ms,
        max_queue_size,
        max_concurrent_exports,
    })
}

fn retry(path: &str, value: &Json) -> Result<Retry, ConfigError> {
    let defaults = Retry::default();
    let mut fields = Fields::of(path, value)?;
    let initial_backoff_ms = fields
        .get("initialBackoffMs", bounded(1, u64::MAX))?
        .unwrap_or(defaults.initial_backoff_ms);
    let max_backoff_ms = fields
        .get("maxBackoffMs", bounded(0, u64::MAX))?
        .unwrap_or(defaults.max_backoff_ms);
    let max_attempts = fields
        .get("maxAttempts", bounded(1, u32::MAX as u64))?
        .map_or(defaults.max_attempts, |n| n as u32);
    fields.finish()?;
    at_least(
        &fields::child_path(path, "maxBackoffMs"),
        max_backoff_ms,
        initial_backoff_ms,
    )?;
    Ok(Retry {
        initial_backoff_ms,
        max_backoff_ms,
        max_attempts,
    })
}

fn response_headers(path: &str, value: &Json) -> Result<ResponseHeaders, ConfigError> {
    let mut fields = Fields::of(path, value)?;
    let headers = ResponseHeaders {
        traceresponse: fields.flag("traceresponse", false)?,
        trace_id_header: fields.get("traceIdHeader", header_name)?,
        facts_header: fields.get("factsHeader", header_name)?,
    };
    fields.finish()?;
    Ok(headers)
}

fn match_(path: &str, value: &Json) -> Result<Match, ConfigError> {
    let mut fields = Fields::of(path, value)?;
    let modes = [
        ("CLIENT_AND_SERVER", MatchMode::ClientAndServer),
        ("CLIENT", MatchMode::Client),
        ("SERVER", MatchMode::Server),
    ];
    let mode = fields
        .get("mode", |path, value| fields::choice(path, value, &modes))?
        .unwrap_or_default();
    fields.finish()?;
    Ok(Match { mode })
}

/// `{"name": ..., "defaultValue": ...}` of an environment or header custom tag.
fn named_source(
    path: &str,
    value: &Json,
    name: impl Fn(&str, &Json) -> Result<String, ConfigError>,
) -> Result<(String, Option<String>), ConfigError> {
    let mut fields = Fields::of(path, value)?;
    let source = (
        fields.require("name", name)?,
        fields.get("defaultValue", fields::string)?,
    );
    fields.finish()?;
    Ok(source)
}

fn custom_tag(path: &str, value: &Json) -> Result<CustomTag, ConfigError> {
    let mut fields = Fields::of(path, value)?;
    let literal = fields.get("literal", |path, value| {
        let mut fields = Fields::of(path, value)?;
        let value = fields.require("value", fields::string)?;
        fields.finish()?;
        Ok(CustomTag::Literal { value })
    })?;
    let environment = fields.get("environment", |path, value| {
        let (name, default_value) = named_source(path, value, |path, value| {
            let name = fields::string(path, value)?;
            if name.is_empty() {
                return Err(invalid(path, "must not be empty"));
            }
            Ok(name)
        })?;
        Ok(CustomTag::Environment {
            name,
            default_value,
        })
    })?;
    let header = fields.get("header", |path, value| {
        let (name, default_value) = named_source(path, value, header_name)?;
        Ok(CustomTag::Header {
            name,
            default_value,
        })
    })?;
    fields.finish()?;
    match (literal, environment, header) {
        (Some(tag), None, None) | (None, Some(tag), None) | (None, None, Some(tag)) => Ok(tag),
        _ => Err(invalid(
            path,
            "must set exactly one of literal, environment, header",
        )),
    }
}

fn path_prefix(path: &str, value: &Json) -> Result<String, ConfigError> {
    let prefix = fields::string(path, value)?;
    if !prefix.starts_with('/') {
        return Err(invalid(
            path,
            format!("must start with '/', got {}", fields::quoted(&prefix)),
        ));
    }
    Ok(prefix)
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid(
                "collector.cluster",
                "is required (the configuration is empty)",
            ));
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| invalid(json::ROOT, "is not valid UTF-8"))?;
        let document = json::parse(text).map_err(|error| invalid(&error.path, error.reason))?;
        Config::read(&document)
    }

    /// Reads and checks every field; the first problem found is the error.
    fn read(document: &Json) -> Result<Config, ConfigError> {
        let mut fields = Fields::of(json::ROOT, document)?;
        let directions = [
            ("auto", Direction::Auto),
            ("inbound", Direction::Inbound),
            ("outbound", Direction::Outbound),
        ];
        let string_list = |path: &str, value: &Json| fields::list(path, value, fields::string);
        let string_map = |path: &str, value: &Json| fields::map(path, value, fields::string);
        let config = Config {
            service_name: fields
                .get("serviceName", fields::string)?
                .filter(|name| !name.is_empty()),
            direction: fields
                .get("direction", |path, value| {
                    fields::choice(path, value, &directions)
                })?
                .unwrap_or_default(),
            match_: fields.get("match", match_)?.unwrap_or_default(),
            sampler: match fields.get("randomSamplingPercentage", sampler)? {
                Some(sampler) => sampler,
                None => Sampler::new(1.0).map_err(|reason| invalid(json::ROOT, reason))?,
            },
            disable_span_reporting: fields.flag("disableSpanReporting", false)?,
            custom_tags: fields
                .get("customTags", |path, value| {
                    let tags = fields::map(path, value, custom_tag)?;
                    if tags.iter().any(|(name, _)| name.is_empty()) {
                        return Err(invalid(path, "tag names must not be empty"));
                    }
                    Ok(tags)
                })?
                .unwrap_or_default(),
            extract: Vec::new(),
            inject: Vec::new(),
            collector: fields.require("collector", collector)?,
            batch: fields.get("batch", batch)?.unwrap_or_default(),
            retry: fields.get("retry", retry)?.unwrap_or_default(),
            resource_attributes: fields
                .get("resourceAttributes", string_map)?
                .unwrap_or_default(),
            exclude_paths: fields
                .get("excludePaths", |path, value| {
                    fields::list(path, value, path_prefix)
                })?
                .unwrap_or_default(),
            record_query: fields.flag("recordQuery", false)?,
            record_body_sizes: fields.flag("recordBodySizes", false)?,
            publish_filter_state: fields.flag("publishFilterState", false)?,
            max_tag_length: fields
                .get("maxTagLength", count(16, u32::MAX as u64))?
                .unwrap_or(256),
            max_attributes: fields.get("maxAttributes", count(1, 128))?.unwrap_or(128),
            trust_incoming_context: fields.flag("trustIncomingContext", true)?,
            baggage_attributes: fields
                .get("baggageAttributes", string_list)?
                .unwrap_or_default(),
            write_sampling_threshold: fields.flag("writeSamplingThreshold", false)?,
            trace_ids_from_request_ids: fields.flag("traceIdsFromRequestIds", false)?,
            response_headers: fields
                .get("responseHeaders", response_headers)?
                .unwrap_or_default(),
        };
        if config.trace_ids_from_request_ids && !config.trust_incoming_context {
            return Err(invalid(
                "traceIdsFromRequestIds",
                "not with trustIncomingContext: false (callers would pick their sampling by their request ids)",
            ));
        }
        if config.response_headers.facts_header.is_some() && config.direction == Direction::Auto {
            return Err(invalid(
                "responseHeaders.factsHeader",
                "needs `direction` set to inbound or outbound",
            ));
        }
        let (extract, inject) = fields
            .get("propagation", |path, value| {
                let mut fields = Fields::of(path, value)?;
                let extract = fields.get("extract", formats)?;
                let inject = fields.get("inject", formats)?;
                fields.finish()?;
                Ok((extract, inject))
            })?
            .unwrap_or_default();
        fields.finish()?;
        Ok(Config {
            extract: extract.unwrap_or_else(|| DEFAULT_EXTRACT.to_vec()),
            inject: inject.unwrap_or_else(|| DEFAULT_INJECT.to_vec()),
            ..config
        })
    }

    pub fn sampler(&self) -> Sampler {
        self.sampler.clone()
    }
}
