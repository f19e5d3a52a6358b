//! The checks no single value can make alone, or that need its place in the document: one
//! field against another, lists without repeats, header names.

use super::error::{invalid, ConfigError};
use super::{Config, CustomTag};

/// An HTTP header name as Envoy stores it: a lowercase token.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
        })
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let collector = &self.collector;
        if collector.cluster.trim().is_empty() {
            return Err(invalid("collector.cluster", "must name an Envoy cluster"));
        }
        for (name, value) in &collector.headers {
            let path = format!("collector.headers.{name}");
            if !is_header_name(name) {
                return Err(invalid(&path, "must be a lowercase header name"));
            }
            // A CR or LF here would smuggle extra metadata into every export.
            if value.bytes().any(|c| c < 0x20 && c != b'\t' || c == 0x7f) {
                return Err(invalid(&path, "must not contain control characters"));
            }
        }
        let batch = &self.batch;
        if batch.max_export_batch_size > batch.max_queue_size {
            let (most, got) = (batch.max_queue_size, batch.max_export_batch_size);
            let reason = format!("must be at most {most}, got {got}");
            return Err(invalid("batch.maxExportBatchSize", reason));
        }
        let retry = &self.retry;
        if retry.max_backoff_ms < retry.initial_backoff_ms {
            let (least, got) = (retry.initial_backoff_ms, retry.max_backoff_ms);
            let reason = format!("must be at least {least}, got {got}");
            return Err(invalid("retry.maxBackoffMs", reason));
        }
        for (path, formats) in [("extract", &self.extract), ("inject", &self.inject)] {
            for (i, format) in formats.iter().enumerate() {
                if formats[..i].contains(format) {
                    let reason = format!("{:?} is listed twice", format.name());
                    return Err(invalid(&format!("propagation.{path}[{i}]"), reason));
                }
            }
        }
        for (i, prefix) in self.exclude_paths.iter().enumerate() {
            if !prefix.starts_with('/') {
                let reason = format!("must start with '/', got {prefix:?}");
                return Err(invalid(&format!("excludePaths[{i}]"), reason));
            }
        }
        for (tag, source) in &self.custom_tags {
            match source {
                CustomTag::Environment { name, .. } if name.is_empty() => {
                    let path = format!("customTags.{tag}.environment.name");
                    return Err(invalid(&path, "must not be empty"));
                }
                CustomTag::Header { name, .. } if !is_header_name(name) => {
                    let path = format!("customTags.{tag}.header.name");
                    return Err(invalid(&path, format!("{name:?} is not a header name")));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
