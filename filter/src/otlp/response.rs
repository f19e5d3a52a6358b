//! Reading what the collector answered: partial success, and the retry hint of the gRPC rich
//! error model.

use super::wire::{FieldReader, FieldValue};
use base64::engine::general_purpose::STANDARD_NO_PAD_INDIFFERENT as BASE64;
use base64::Engine;
use std::time::Duration;

/// Each length-delimited field `field` of `message`, in order; stops at the first malformed byte.
fn messages(message: &[u8], field: u32) -> impl Iterator<Item = Result<&[u8], &'static str>> {
    let mut reader = FieldReader::new(message);
    std::iter::from_fn(move || reader.next_field()).filter_map(move |next| match next {
        Ok((number, FieldValue::Bytes(bytes))) if number == field => Some(Ok(bytes)),
        Ok(_) => None,
        Err(reason) => Some(Err(reason)),
    })
}

/// The last varint field `field` of `message` (protobuf's rule for a repeated scalar), or 0.
fn varint(message: &[u8], field: u32) -> Result<u64, &'static str> {
    let mut reader = FieldReader::new(message);
    let mut value = 0;
    while let Some(next) = reader.next_field() {
        if let (number, FieldValue::Varint(v)) = next? {
            if number == field {
                value = v;
            }
        }
    }
    Ok(value)
}

/// The number of spans the collector rejected in an otherwise successful export:
/// `ExportTraceServiceResponse.partial_success` (1) `.rejected_spans` (1, int64).
pub fn decode_export_response(bytes: &[u8]) -> Result<u64, String> {
    let mut rejected = 0;
    for partial_success in messages(bytes, 1) {
        let partial_success = partial_success.map_err(String::from)?;
        rejected = (varint(partial_success, 1).map_err(String::from)? as i64).max(0) as u64;
    }
    Ok(rejected)
}

/// The `RetryInfo.retry_delay` in a `grpc-status-details-bin` value, if there is one. On the wire
/// `-bin` metadata is base64 (gRPC leaves out the padding) and proxies may pass it on as such, so
/// both the encoded and the decoded form are read.
pub fn retry_delay_from_status_details(details: &[u8]) -> Option<Duration> {
    let decoded = BASE64.decode(details).ok();
    let bytes = decoded.as_deref().unwrap_or(details);
    retry_delay_from_status(bytes).or_else(|| retry_delay_from_status(details))
}

/// `google.rpc.Status.details` (3) are `Any` messages: `type_url` (1), `value` (2). The
/// `RetryInfo` one holds `retry_delay` (1), a `Duration` of `seconds` (1) and `nanos` (2).
fn retry_delay_from_status(status: &[u8]) -> Option<Duration> {
    for any in messages(status, 3) {
        let any = any.ok()?;
        let type_url = messages(any, 1).last()?.ok()?;
        if !type_url.ends_with(b"google.rpc.RetryInfo") {
            continue;
        }
        let info = messages(any, 2).last().unwrap_or(Ok(&[])).ok()?;
        let delay = messages(info, 1).last()?.ok()?;
        let seconds = varint(delay, 1).ok()? as i64;
        let nanos = varint(delay, 2).ok()? as i64;
        if seconds < 0 || !(0..1_000_000_000).contains(&nanos) {
            return None;
        }
        return Some(Duration::new(seconds as u64, nanos as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::{collector, rpc};
    use prost::Message;

    #[test]
    fn partial_success_counts_rejections() {
        for (rejected_spans, expected) in [(3i64, 3u64), (0, 0), (-5, 0), (1 << 40, 1 << 40)] {
            let response = collector::ExportTraceServiceResponse {
                partial_success: Some(collector::ExportTracePartialSuccess {
                    rejected_spans,
                    error_message: "bad".into(),
                }),
            };
            let mut bytes = response.encode_to_vec();
            // A field from a newer collector is skipped, as protobuf requires.
            bytes.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01, 0x21, 1, 2, 3, 4, 5, 6, 7, 8]);
            assert_eq!(
                decode_export_response(&bytes),
                Ok(expected),
                "{rejected_spans}"
            );
        }
        assert_eq!(decode_export_response(&[]), Ok(0));
        assert!(decode_export_response(&[0x0a, 0xff]).is_err());
        assert!(decode_export_response(&[0x0a, 0x02, 0x08]).is_err());
    }

    /// A `RetryInfo` detail as the gRPC rich error model packs it.
    fn retry_info(seconds: i64, nanos: i32) -> prost_types::Any {
        let info = rpc::RetryInfo {
            retry_delay: Some(prost_types::Duration { seconds, nanos }),
        };
        prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: info.encode_to_vec(),
        }
    }

    fn status(code: i32, message: &str, details: Vec<prost_types::Any>) -> Vec<u8> {
        rpc::Status {
            code,
            message: message.into(),
            details,
        }
        .encode_to_vec()
    }

    #[test]
    fn agrees_with_prost_on_damaged_status_details() {
        let status = status(14, "unavailable", vec![retry_info(1, 250_000_000)]);
        let prost_delay = |bytes: &[u8]| {
            let status = rpc::Status::decode(bytes).ok()?;
            let any = status
                .details
                .iter()
                .find(|any| any.type_url.ends_with("google.rpc.RetryInfo"))?;
            let delay = rpc::RetryInfo::decode(any.value.as_slice())
                .ok()?
                .retry_delay?;
            Some(Duration::new(delay.seconds as u64, delay.nanos as u32))
        };
        for cut in 0..=status.len() {
            let damaged = &status[..cut];
            assert_eq!(
                retry_delay_from_status(damaged),
                prost_delay(damaged),
                "cut at {cut}"
            );
        }
        for at in 0..status.len() {
            let mut flipped = status.clone();
            flipped[at] ^= 0x80;
            // Fields it does not read (the message's UTF-8) it does not judge, so it may find a
            // delay where prost refuses the whole message; never a different one.
            if let Some(expected) = prost_delay(&flipped) {
                assert_eq!(
                    retry_delay_from_status(&flipped),
                    Some(expected),
                    "flip at {at}"
                );
            }
        }
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let padded = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(BASE64.decode(&padded).ok(), Some(data.clone()));
            assert_eq!(BASE64.decode(padded.trim_end_matches('=')).ok(), Some(data));
        }
        assert_eq!(BASE64.decode(b"a").ok(), None);
        assert_eq!(BASE64.decode(b"ab!d").ok(), None);
    }

    #[test]
    fn finds_the_retry_delay() {
        let debug_info = prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
            value: vec![],
        };
        let slow_down = status(8, "slow down", vec![debug_info, retry_info(2, 500_000_000)]);
        assert_eq!(
            retry_delay_from_status_details(&slow_down),
            Some(Duration::from_millis(2500))
        );
        let as_sent = BASE64.encode(&slow_down);
        assert_eq!(
            retry_delay_from_status_details(as_sent.as_bytes()),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            retry_delay_from_status_details(&status(8, "", vec![])),
            None
        );
        assert_eq!(retry_delay_from_status_details(b"\xff\xff"), None);
    }
}
