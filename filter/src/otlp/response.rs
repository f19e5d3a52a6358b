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

/// The `RetryInfo.retry_delay` in a `grpc-status-details-bin` value, if there is one. On the wire
/// `-bin` metadata is base64 (gRPC leaves out the padding) and proxies may pass it on as such, so
/// both the encoded and the decoded form are read.
pub fn retry_delay_from_status_details(details: &[u8]) -> Option<Duration> {
    let decoded = base64_decode(details);
    let bytes = decoded.as_deref().unwrap_or(details);
    retry_delay_from_status(bytes).or_else(|| retry_delay_from_status(details))
}

fn retry_delay_from_status(details: &[u8]) -> Option<Duration> {
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

/// Standard base64, padding optional; None for anything else.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            bits |= value(*c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
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

    fn base64_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut bits = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                bits |= (*b as u32) << (16 - 8 * i);
            }
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(base64_encode(&data).as_bytes()), Some(data));
        }
        assert_eq!(base64_decode(b"a"), None);
        assert_eq!(base64_decode(b"ab!d"), None);
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
