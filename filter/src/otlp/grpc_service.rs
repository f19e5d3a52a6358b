//! Where an export goes. Envoy's Wasm gRPC calls take either a cluster name or a serialized
//! `envoy.config.core.v3.GrpcService`; the latter carries the `:authority` to send, which a
//! collector behind a name-based gateway needs.

use super::wire::{put_message, put_str};

/// `GrpcService { envoy_grpc: { cluster_name, authority } }` bytes, or the bare cluster name when
/// no authority is configured.
pub fn grpc_service_target(cluster: &str, authority: Option<&str>) -> Vec<u8> {
    match authority.filter(|a| !a.is_empty()) {
        None => cluster.as_bytes().to_vec(),
        Some(authority) => {
            let mut out = Vec::with_capacity(cluster.len() + authority.len() + 8);
            put_message(&mut out, 1, |envoy_grpc| {
                put_str(envoy_grpc, 1, cluster);
                put_str(envoy_grpc, 2, authority);
            });
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_envoy_grpc_with_authority() {
        assert_eq!(grpc_service_target("otel", None), b"otel");
        assert_eq!(grpc_service_target("otel", Some("")), b"otel");
        // envoy_grpc (field 1, 17 bytes): cluster_name "otel", authority "collector"
        let expected: Vec<u8> =
            [&[0x0a, 17, 0x0a, 4][..], b"otel", &[0x12, 9], b"collector"].concat();
        assert_eq!(grpc_service_target("otel", Some("collector")), expected);
    }
}
