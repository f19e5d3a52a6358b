//! The configuration document's shape, as serde reads it. Every field is optional here, so that
//! `null` means unset as it does in the protobuf Struct Istio hands over; defaults, required
//! fields and checks between fields are `validate`'s. Unknown fields are refused so that a typo
//! never silently does nothing. Each object says it expects "an object", where serde would
//! otherwise name the Rust struct in a type error.

use super::names::{ClusterName, FormatName, HeaderName, HeaderValue, PathPrefix, VariableName};
use super::numbers::{Percentage, Whole, COUNT_MAX};
use super::pairs::Pairs;
use super::{Direction, MatchMode};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub struct Document {
    pub service_name: Option<String>,
    pub direction: Option<Direction>,
    #[serde(rename = "match")]
    pub match_: Option<MatchDocument>,
    pub random_sampling_percentage: Option<Percentage>,
    pub disable_span_reporting: Option<bool>,
    pub custom_tags: Option<Pairs<CustomTagDocument>>,
    pub propagation: Option<PropagationDocument>,
    pub collector: Option<CollectorDocument>,
    pub batch: Option<BatchDocument>,
    pub retry: Option<RetryDocument>,
    pub resource_attributes: Option<Pairs<String>>,
    pub exclude_paths: Option<Vec<PathPrefix>>,
    pub record_query: Option<bool>,
    pub record_body_sizes: Option<bool>,
    pub publish_filter_state: Option<bool>,
    pub max_tag_length: Option<Whole<16, COUNT_MAX>>,
    pub max_attributes: Option<Whole<1, 128>>,
    pub trust_incoming_context: Option<bool>,
    pub baggage_attributes: Option<Vec<String>>,
    pub write_sampling_threshold: Option<bool>,
    pub response_headers: Option<ResponseHeadersDocument>,
    pub record_unsampled: Option<RecordUnsampledDocument>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct MatchDocument {
    pub mode: Option<MatchMode>,
}

/// Telemetry API `customTags` entry; `validate` checks exactly one source is set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct CustomTagDocument {
    pub literal: Option<LiteralDocument>,
    pub environment: Option<SourceDocument<VariableName>>,
    pub header: Option<SourceDocument<HeaderName>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct LiteralDocument {
    pub value: Option<String>,
}

/// `{"name": ..., "defaultValue": ...}` of an environment or header custom tag.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub struct SourceDocument<Name> {
    pub name: Option<Name>,
    pub default_value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct PropagationDocument {
    pub extract: Option<Vec<FormatName>>,
    pub inject: Option<Vec<FormatName>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub struct CollectorDocument {
    pub cluster: Option<ClusterName>,
    pub authority: Option<String>,
    pub timeout_ms: Option<Whole<1, 60_000>>,
    pub headers: Option<Pairs<HeaderValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub struct BatchDocument {
    pub max_export_batch_size: Option<Whole<1, { 1 << 20 }>>,
    pub scheduled_delay_ms: Option<Whole<1, { u64::MAX }>>,
    pub max_queue_size: Option<Whole<1, { 1 << 20 }>>,
    pub max_concurrent_exports: Option<Whole<1, 64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub struct RetryDocument {
    pub initial_backoff_ms: Option<Whole<1, { u64::MAX }>>,
    pub max_backoff_ms: Option<Whole<0, { u64::MAX }>>,
    pub max_attempts: Option<Whole<1, { u32::MAX as u64 }>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub struct ResponseHeadersDocument {
    pub traceresponse: Option<bool>,
    pub trace_id_header: Option<HeaderName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub struct RecordUnsampledDocument {
    pub on_error: Option<bool>,
    pub slower_than_ms: Option<Whole<0, { u64::MAX }>>,
}
