//! Telemetry API `customTags` at run time: literal and environment tags are resolved once,
//! header tags per request.

use super::CustomTag;

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
