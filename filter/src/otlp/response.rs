//! Reading what the collector answered: partial success, and the retry hint of the gRPC rich
//! error model.

use super::proto::{collector, rpc};
use prost::Message;
use std::time::Duration;

/// The number of spans the collector rejected in an otherwise successful export.
pub fn decode_export_response(bytes: &[u8]) -> Result<u64, String> {
    let response =
        collector::ExportTraceServiceResponse::decode(bytes).map_err(|e| e.to_string())?;
    Ok(response
        .partial_success
        .map_or(0, |partial| partial.rejected_spans.max(0) as u64))
}

/// The `RetryInfo.retry_delay` in a `grpc-status-details-bin` value, if there is one.
pub fn retry_delay_from_status_details(details: &[u8]) -> Option<Duration> {
    let status = rpc::Status::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|any| any.type_url.ends_with("google.rpc.RetryInfo"))?;
    let delay = rpc::RetryInfo::decode(info.value.as_slice())
        .ok()?
        .retry_delay?;
    if delay.seconds < 0 || delay.nanos < 0 {
        return None;
    }
    Some(Duration::new(delay.seconds as u64, delay.nanos as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_counts_rejections() {
        let response = collector::ExportTraceServiceResponse {
            partial_success: Some(collector::ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "bad".into(),
            }),
        };
        assert_eq!(decode_export_response(&response.encode_to_vec()), Ok(3));
        assert_eq!(decode_export_response(&[]), Ok(0));
        assert!(decode_export_response(&[0x0a, 0xff]).is_err());
    }

    #[test]
    fn finds_the_retry_delay() {
        let info = rpc::RetryInfo {
            retry_delay: Some(prost_types::Duration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let status = rpc::Status {
            code: 8,
            message: "slow down".into(),
            details: vec![
                prost_types::Any {
                    type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
                    value: vec![],
                },
                prost_types::Any {
                    type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                    value: info.encode_to_vec(),
                },
            ],
        };
        assert_eq!(
            retry_delay_from_status_details(&status.encode_to_vec()),
            Some(Duration::from_millis(2500))
        );
        let none = rpc::Status {
            code: 8,
            message: String::new(),
            details: vec![],
        };
        assert_eq!(retry_delay_from_status_details(&none.encode_to_vec()), None);
        assert_eq!(retry_delay_from_status_details(b"\xff\xff"), None);
    }
}
