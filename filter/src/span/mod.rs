//! A finished span as the filter records it, borrowing everything, and the OTel status rules.

pub mod envoy_flags;
pub mod facts;
pub mod http;
pub mod record;
pub mod resource;
pub mod route;

use crate::context::{SpanId, TraceId};
use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttributeValue<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Double(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attribute<'a> {
    pub key: &'a str,
    pub value: AttributeValue<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: &'a str,
    pub sampled: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct FinishedSpan<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub parent_is_remote: bool,
    pub trace_state: &'a str,
    pub sampled: bool,
    pub random: bool,
    pub name: &'a str,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: &'a [Attribute<'a>],
    pub links: &'a [Link<'a>],
    pub status: StatusCode,
    pub status_message: &'a str,
}

/// What Envoy's response flags say happened when there was no response at all.
fn describe_flags(flags: &str) -> Cow<'static, str> {
    let first = flags.split(',').next().unwrap_or("");
    let text = match first {
        "UF" => "upstream connection failure",
        "UT" => "upstream request timeout",
        "UC" => "upstream connection termination",
        "UR" => "upstream remote reset",
        "URX" => "upstream retry limit exceeded",
        "UH" => "no healthy upstream",
        "UO" => "upstream overflow (circuit breaker)",
        "NR" => "no route configured",
        "NC" => "no cluster found",
        "DC" => "downstream connection termination",
        "DR" => "downstream remote reset",
        "DPE" => "downstream protocol error",
        "UPE" => "upstream protocol error",
        "LR" => "local reset",
        "RL" => "rate limited",
        "SI" => "stream idle timeout",
        "DT" => "request duration timeout",
        "UMSDR" => "upstream max stream duration reached",
        "" => return Cow::Borrowed("no response"),
        _ => return Cow::Owned(format!("no response ({flags})")),
    };
    if flags.contains(',') {
        Cow::Owned(format!("{text} ({flags})"))
    } else {
        Cow::Borrowed(text)
    }
}

/// OTel gRPC semconv: these codes are server errors; every non-OK code is a client error.
fn grpc_server_error(code: u32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Status by the OTel HTTP and gRPC rules; never `Ok`, which is for applications to set.
pub fn http_span_status(
    kind: SpanKind,
    http_status: Option<u32>,
    grpc_status: Option<u32>,
    response_flags: &str,
) -> (StatusCode, Cow<'static, str>) {
    let Some(http_status) = http_status.filter(|s| *s > 0) else {
        return (StatusCode::Error, describe_flags(response_flags));
    };
    if let Some(code) = grpc_status {
        let error = match kind {
            SpanKind::Server => grpc_server_error(code),
            SpanKind::Client => code != 0,
        };
        if error {
            return (StatusCode::Error, Cow::Owned(format!("gRPC status {code}")));
        }
    }
    let error = match kind {
        SpanKind::Server => http_status >= 500,
        SpanKind::Client => http_status >= 400,
    };
    if error {
        (StatusCode::Error, Cow::Borrowed(""))
    } else {
        (StatusCode::Unset, Cow::Borrowed(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SpanKind::*;
    use StatusCode::*;

    /// (kind, HTTP status, gRPC status, response flags, expected code, expected message)
    type Case = (
        SpanKind,
        Option<u32>,
        Option<u32>,
        &'static str,
        StatusCode,
        &'static str,
    );

    #[test]
    fn status_rules() {
        let cases: &[Case] = &[
            (Server, Some(200), None, "", Unset, ""),
            (Server, Some(404), None, "", Unset, ""),
            (Server, Some(499), None, "", Unset, ""),
            (Server, Some(500), None, "", Error, ""),
            (Server, Some(503), None, "UF", Error, ""),
            (Client, Some(404), None, "", Error, ""),
            (Client, Some(302), None, "", Unset, ""),
            (
                Client,
                None,
                None,
                "UF",
                Error,
                "upstream connection failure",
            ),
            (
                Server,
                Some(0),
                None,
                "DC",
                Error,
                "downstream connection termination",
            ),
            (Server, None, None, "", Error, "no response"),
            (
                Client,
                None,
                None,
                "UF,URX",
                Error,
                "upstream connection failure (UF,URX)",
            ),
            (Client, None, None, "XYZ", Error, "no response (XYZ)"),
            (Server, Some(200), Some(0), "", Unset, ""),
            (Server, Some(200), Some(5), "", Unset, ""),
            (Server, Some(200), Some(14), "", Error, "gRPC status 14"),
            (Client, Some(200), Some(5), "", Error, "gRPC status 5"),
        ];
        for (kind, http, grpc, flags, code, message) in cases {
            let (status, text) = http_span_status(*kind, *http, *grpc, flags);
            assert_eq!(
                (status, text.as_ref()),
                (*code, *message),
                "{kind:?} {http:?} {grpc:?} {flags}"
            );
        }
    }
}
