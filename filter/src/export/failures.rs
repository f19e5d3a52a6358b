//! Why exports fail, in the words an operator needs, and how often to say it: a sidecar that
//! cannot reach its collector fails every batch, and one log line per batch would bury the
//! cause.

use super::retry::{DEADLINE_EXCEEDED, UNAVAILABLE};

/// How long one cause stays quiet after it was logged.
pub const QUIET_MS: u64 = 60_000;

/// Why an export did not reach the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCause {
    /// Envoy has no cluster of the configured name (Istio: a `Sidecar` resource, `exportTo` or
    /// `discoverySelectors` leaves the collector's service out of this proxy's view).
    ClusterMissing,
    /// Envoy would not open a stream to the cluster.
    StreamNotOpened,
    /// No connection: refused, reset, no healthy host, or a TLS-only endpoint spoken to in
    /// plain text (gRPC UNAVAILABLE).
    Unavailable,
    /// The collector did not answer within `collector.timeoutMs`.
    DeadlineExceeded,
    /// The collector answered with another gRPC status.
    Refused(u32),
}

impl FailureCause {
    pub fn of_grpc_status(status: u32) -> FailureCause {
        match status {
            DEADLINE_EXCEEDED => FailureCause::DeadlineExceeded,
            UNAVAILABLE => FailureCause::Unavailable,
            other => FailureCause::Refused(other),
        }
    }

    /// One log line: the cause, then where to look. `detail` is the host's own message.
    pub fn describe(&self, cluster: &str, detail: Option<&str>) -> String {
        let check = format!(
            "check `istioctl proxy-config cluster <pod> | grep '{}'` (plain Envoy: the cluster in the bootstrap)",
            host_of(cluster)
        );
        let detail = detail
            .filter(|detail| !detail.is_empty())
            .map(|detail| format!(" ({detail})"))
            .unwrap_or_default();
        match self {
            FailureCause::ClusterMissing => format!(
                "sidetrace: export failed: Envoy has no cluster `{cluster}`; spans are dropped \
                 until it exists: {check}, and that a Sidecar resource, exportTo or \
                 discoverySelectors keeps the collector's service visible"
            ),
            FailureCause::StreamNotOpened => format!(
                "sidetrace: export failed: Envoy could not open a gRPC stream to cluster \
                 `{cluster}`{detail}: {check}"
            ),
            FailureCause::Unavailable => format!(
                "sidetrace: export failed: collector unreachable through cluster `{cluster}`{detail}: \
                 connection refused or reset, no healthy endpoint, or a TLS-only endpoint without \
                 TLS (a DestinationRule with tls mode SIMPLE); {check}"
            ),
            FailureCause::DeadlineExceeded => format!(
                "sidetrace: export failed: the collector behind cluster `{cluster}` did not answer \
                 within collector.timeoutMs{detail}; spans are retried, then dropped"
            ),
            FailureCause::Refused(status) => format!(
                "sidetrace: export failed: the collector behind cluster `{cluster}` answered gRPC \
                 status {status}{detail}; is it an OTLP/gRPC receiver?"
            ),
        }
    }
}

/// An Istio cluster name's host (`outbound|4317||otel.ns.svc.cluster.local` →
/// `otel.ns.svc.cluster.local`), or the name itself.
fn host_of(cluster: &str) -> &str {
    cluster.rsplit('|').next().unwrap_or(cluster)
}

/// When each cause was last logged.
#[derive(Default)]
pub struct FailureLog {
    last_logged_ms: Vec<(FailureCause, u64)>,
}

impl FailureLog {
    /// Whether `cause` is to be logged now: the first time, and once `QUIET_MS` has passed.
    pub fn should_log(&mut self, cause: FailureCause, now_ms: u64) -> bool {
        match self.last_logged_ms.iter_mut().find(|(c, _)| *c == cause) {
            Some((_, last)) if now_ms.saturating_sub(*last) < QUIET_MS => false,
            Some((_, last)) => {
                *last = now_ms;
                true
            }
            None => {
                self.last_logged_ms.push((cause, now_ms));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_logged_at_most_once_a_minute() {
        let mut log = FailureLog::default();
        let unavailable = FailureCause::Unavailable;
        let missing = FailureCause::ClusterMissing;
        // (cause, now, logged)
        let steps = [
            (unavailable, 0, true),
            (unavailable, 1_000, false),
            (missing, 1_000, true),
            (unavailable, QUIET_MS - 1, false),
            (unavailable, QUIET_MS, true),
            (missing, QUIET_MS, false),
            (unavailable, QUIET_MS + 5, false),
            (FailureCause::Refused(12), QUIET_MS + 5, true),
            (FailureCause::Refused(16), QUIET_MS + 6, true),
        ];
        for (at, (cause, now, logged)) in steps.into_iter().enumerate() {
            assert_eq!(log.should_log(cause, now), logged, "step {at}: {cause:?}");
        }
    }

    #[test]
    fn descriptions_name_the_cause_and_where_to_look() {
        let cluster = "outbound|4317||otel.obs.svc.cluster.local";
        let cases = [
            (FailureCause::ClusterMissing, "has no cluster"),
            (FailureCause::of_grpc_status(14), "unreachable"),
            (FailureCause::of_grpc_status(4), "did not answer"),
            (FailureCause::of_grpc_status(12), "gRPC status 12"),
        ];
        for (cause, words) in cases {
            let line = cause.describe(cluster, Some("upstream connect error"));
            assert!(line.contains(words), "{line}");
            assert!(line.contains(cluster), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
        let line = FailureCause::ClusterMissing.describe(cluster, None);
        assert!(line.contains("grep 'otel.obs.svc.cluster.local'"), "{line}");
    }
}
