//! Resource attributes: who emitted the spans, from the configuration and Envoy's node
//! metadata (which istiod fills with the pod's identity).

use crate::config::Config;

/// The Istio node metadata fields the filter reads (`xds.node.metadata.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub workload_name: Option<String>,
    pub cluster_id: Option<String>,
    pub mesh_id: Option<String>,
    pub labels: Vec<(String, String)>,
}

pub const CANONICAL_NAME_LABEL: &str = "service.istio.io/canonical-name";
pub const CANONICAL_REVISION_LABEL: &str = "service.istio.io/canonical-revision";
/// Istio's mesh id has no OTel semantic convention; this key names it.
pub const MESH_ID_ATTRIBUTE: &str = "service.mesh";
pub const UNKNOWN_SERVICE: &str = "unknown_service:envoy";

impl NodeInfo {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// Configured name, else the canonical-name label, else `app`, else the workload name.
pub fn service_name(configured: Option<&str>, node: &NodeInfo) -> String {
    configured
        .filter(|name| !name.is_empty())
        .or_else(|| node.label(CANONICAL_NAME_LABEL))
        .or_else(|| node.label("app"))
        .or(node.workload_name.as_deref())
        .unwrap_or(UNKNOWN_SERVICE)
        .to_string()
}

pub fn resource_attributes(config: &Config, node: &NodeInfo) -> Vec<(String, String)> {
    let mut attributes: Vec<(String, String)> =
        Vec::with_capacity(12 + config.resource_attributes.len());
    let mut put = |key: &str, value: Option<&str>| {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return;
        };
        match attributes.iter_mut().find(|(k, _)| k == key) {
            Some(existing) => existing.1 = value.to_string(),
            None => attributes.push((key.to_string(), value.to_string())),
        }
    };
    put(
        "service.name",
        Some(&service_name(config.service_name.as_deref(), node)),
    );
    put(
        "service.version",
        node.label(CANONICAL_REVISION_LABEL)
            .or_else(|| node.label("version")),
    );
    put("service.namespace", node.namespace.as_deref());
    put("k8s.pod.name", node.name.as_deref());
    put("k8s.namespace.name", node.namespace.as_deref());
    put("k8s.cluster.name", node.cluster_id.as_deref());
    put(MESH_ID_ATTRIBUTE, node.mesh_id.as_deref());
    put("telemetry.sdk.name", Some("sidetrace"));
    put("telemetry.sdk.language", Some("rust"));
    put("telemetry.sdk.version", Some(env!("CARGO_PKG_VERSION")));
    for (key, value) in &config.resource_attributes {
        put(key, Some(value));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn istio_node() -> NodeInfo {
        NodeInfo {
            name: Some("checkout-7d9f-abcde".into()),
            namespace: Some("shop".into()),
            workload_name: Some("checkout-v2".into()),
            cluster_id: Some("east-1".into()),
            mesh_id: Some("mesh-a".into()),
            labels: vec![
                ("app".into(), "checkout-app".into()),
                (CANONICAL_NAME_LABEL.into(), "checkout".into()),
                (CANONICAL_REVISION_LABEL.into(), "v2".into()),
            ],
        }
    }

    #[test]
    fn service_name_precedence() {
        let mut node = istio_node();
        assert_eq!(service_name(Some("configured"), &node), "configured");
        assert_eq!(service_name(None, &node), "checkout");
        node.labels.retain(|(k, _)| k != CANONICAL_NAME_LABEL);
        assert_eq!(service_name(Some(""), &node), "checkout-app");
        node.labels.clear();
        assert_eq!(service_name(None, &node), "checkout-v2");
        assert_eq!(service_name(None, &NodeInfo::default()), UNKNOWN_SERVICE);
    }

    #[test]
    fn attributes_from_node_metadata_then_configuration() {
        let config = Config::from_json(
            br#"{"collector":{"cluster":"c"},"resourceAttributes":{"deployment.environment":"prod","k8s.cluster.name":"override"}}"#,
        )
        .unwrap();
        let attributes = resource_attributes(&config, &istio_node());
        let get = |key: &str| {
            attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("service.name"), Some("checkout"));
        assert_eq!(get("service.version"), Some("v2"));
        assert_eq!(get("k8s.pod.name"), Some("checkout-7d9f-abcde"));
        assert_eq!(get("k8s.namespace.name"), Some("shop"));
        assert_eq!(get("k8s.cluster.name"), Some("override"));
        assert_eq!(get(MESH_ID_ATTRIBUTE), Some("mesh-a"));
        assert_eq!(get("telemetry.sdk.name"), Some("sidetrace"));
        assert_eq!(get("deployment.environment"), Some("prod"));
        let keys: Vec<&str> = attributes.iter().map(|(k, _)| k.as_str()).collect();
        let mut unique = keys.clone();
        unique.dedup();
        assert_eq!(keys.len(), unique.len());
        let bare = resource_attributes(&config, &NodeInfo::default());
        assert_eq!(
            bare.iter().find(|(k, _)| k == "service.name").unwrap().1,
            UNKNOWN_SERVICE
        );
        assert!(bare.iter().all(|(k, _)| k != "k8s.pod.name"));
    }
}
