//! What a span records from the proxy once the stream is over (status, protocol, peers, route),
//! asked for in one question instead of one attribute read each.
//!
//! Each attribute read is a host call that hands its value into the VM in a buffer the host
//! allocates there, however small the value. Envoy also evaluates CEL expressions for a module
//! (its `expr_create` / `expr_evaluate` foreign functions): one expression listing every fact
//! the span needs returns them all in one buffer. The expression
//! is written here, compiled once per plugin, and its answer decoded here; a host without the
//! functions, or an answer that does not decode, leaves the caller to read the facts one by one.

use crate::propagation::header_block::read_u32;
use crate::span::SpanKind;
use std::borrow::Cow;

/// Which expression a stream needs. Each combination is compiled once, at configure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FactsQuery {
    /// `None` when the listener's direction is still unknown: the expression reads it too.
    pub kind: Option<SpanKind>,
    pub grpc: bool,
    pub body_sizes: bool,
}

impl FactsQuery {
    /// Every query a plugin can make, for compiling them up front.
    pub fn all(body_sizes: bool) -> [FactsQuery; 6] {
        let kinds = [Some(SpanKind::Server), Some(SpanKind::Client), None];
        std::array::from_fn(|i| FactsQuery {
            kind: kinds[i / 2],
            grpc: i % 2 == 1,
            body_sizes,
        })
    }

    /// This query's place in `all`.
    pub fn index(&self) -> usize {
        let kind = match self.kind {
            Some(SpanKind::Server) => 0,
            Some(SpanKind::Client) => 1,
            None => 2,
        };
        kind * 2 + self.grpc as usize
    }
}

/// Envoy's `xds.listener_direction` values.
const INBOUND: i64 = 1;
const OUTBOUND: i64 = 2;

/// The facts every span carries, then those of its kind, then the optional ones. The list's
/// first element is the listener's direction when the query asked for it.
const COMMON: [&str; 3] = ["response.code", "request.protocol", "xds.route_name"];
const SERVER: [&str; 1] = ["source.address"];
/// A client span's upstream: absent when Envoy answered itself (a direct response) or found no
/// healthy host, which is when the cluster named matters most.
const CLIENT: [&str; 2] = ["upstream.address", "xds.cluster_name"];
const CLIENT_WITHOUT_HOST: [&str; 2] = ["''", "has(xds.cluster_name) ? xds.cluster_name : ''"];
const GRPC: [&str; 1] = ["response.grpc_status"];
const BODY_SIZES: [&str; 2] = ["request.size", "response.size"];

/// The list of facts: `head` (a direction) if any, the common ones, `kind_facts`, then the
/// optional ones.
fn list(head: Option<i64>, kind_facts: &[&str], query: &FactsQuery) -> String {
    let head = head.map(|direction| direction.to_string());
    let grpc: &[&str] = if query.grpc { &GRPC } else { &[] };
    let sizes: &[&str] = if query.body_sizes { &BODY_SIZES } else { &[] };
    let items: Vec<&str> = head
        .iter()
        .map(String::as_str)
        .chain(COMMON)
        .chain(kind_facts.iter().copied())
        .chain(grpc.iter().copied())
        .chain(sizes.iter().copied())
        .collect();
    format!("[{}]", items.join(", "))
}

fn client(head: Option<i64>, query: &FactsQuery) -> String {
    format!(
        "has(upstream.address) ? {} : {}",
        list(head, &CLIENT, query),
        list(head, &CLIENT_WITHOUT_HOST, query)
    )
}

/// The CEL expression answering `query`: a list in which each attribute is looked up once. An
/// attribute the stream lacks (no route matched, no response) fails the evaluation, and the
/// caller falls back to reading the facts one by one: guarding each with `has()` would cost
/// every stream a second lookup for what only failed exchanges lack. The upstream host is the
/// exception, guarded once, as a sidecar answers some requests itself. With the direction
/// unknown, the listener's direction picks the list (one lookup) and heads it.
pub fn expression(query: &FactsQuery) -> String {
    match query.kind {
        Some(SpanKind::Server) => list(None, &SERVER, query),
        Some(SpanKind::Client) => client(None, query),
        // OUTBOUND, as the test of the expressions holds.
        None => format!(
            "xds.listener_direction == 2 ? ({}) : {}",
            client(Some(OUTBOUND), query),
            list(Some(INBOUND), &SERVER, query)
        ),
    }
}

/// The answer to one query. Strings are `None` when empty; decoded ones borrow from the host's
/// answer, those read one by one are owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanFacts<'a> {
    /// The span's kind, when the query left it to the listener's direction.
    pub kind: Option<SpanKind>,
    pub status_code: Option<u32>,
    pub protocol: Option<Cow<'a, str>>,
    pub route_name: Option<Cow<'a, str>>,
    pub downstream_peer: Option<Cow<'a, str>>,
    pub upstream_address: Option<Cow<'a, str>>,
    pub upstream_cluster: Option<Cow<'a, str>>,
    pub grpc_status: Option<u32>,
    pub request_body_size: Option<i64>,
    pub response_body_size: Option<i64>,
}

impl<'a> SpanFacts<'a> {
    /// Decodes Envoy's answer to `query`: a list serializes as header-map pairs whose names are
    /// the elements, integers as 8 little-endian bytes. Anything but the elements the query's
    /// expression lists, well formed, is refused whole.
    pub fn decode(query: &FactsQuery, answer: &'a [u8]) -> Option<SpanFacts<'a>> {
        let mut elements = ListElements::new(answer)?;
        let int = |bytes: &[u8]| Some(i64::from_le_bytes(bytes.try_into().ok()?));
        let text = |bytes: &'a [u8]| {
            let text = std::str::from_utf8(bytes).ok()?;
            Some((!text.is_empty()).then_some(Cow::Borrowed(text)))
        };
        let code = |bytes: &[u8]| u32::try_from(int(bytes)?).ok();
        let (kind, read_kind) = match query.kind {
            Some(kind) => (kind, None),
            None => match int(elements.next()?)? {
                OUTBOUND => (SpanKind::Client, Some(SpanKind::Client)),
                INBOUND => (SpanKind::Server, Some(SpanKind::Server)),
                _ => return None,
            },
        };
        let mut facts = SpanFacts {
            kind: read_kind,
            status_code: Some(code(elements.next()?)?),
            protocol: text(elements.next()?)?,
            route_name: text(elements.next()?)?,
            ..SpanFacts::default()
        };
        match kind {
            SpanKind::Server => facts.downstream_peer = text(elements.next()?)?,
            SpanKind::Client => {
                facts.upstream_address = text(elements.next()?)?;
                facts.upstream_cluster = text(elements.next()?)?;
            }
        }
        if query.grpc {
            facts.grpc_status = Some(code(elements.next()?)?);
        }
        if query.body_sizes {
            facts.request_body_size = Some(int(elements.next()?)?);
            facts.response_body_size = Some(int(elements.next()?)?);
        }
        elements.read_whole().then_some(facts)
    }
}

/// The names of a proxy-wasm pairs buffer, in order, as raw bytes (integers are not text),
/// read as they are asked for.
struct ListElements<'a> {
    bytes: &'a [u8],
    count: usize,
    index: usize,
    /// Where the next pair's name starts.
    data: usize,
}

impl<'a> ListElements<'a> {
    fn new(bytes: &'a [u8]) -> Option<Self> {
        let count = read_u32(bytes, 0)?;
        // Every pair takes at least ten bytes: two lengths and two terminators.
        if count > bytes.len() / 10 {
            return None;
        }
        Some(ListElements {
            bytes,
            count,
            index: 0,
            data: 4 + 8 * count,
        })
    }

    /// Whether every element was read and the buffer holds nothing after them.
    fn read_whole(&self) -> bool {
        self.index == self.count && self.data == self.bytes.len()
    }
}

impl<'a> Iterator for ListElements<'a> {
    type Item = &'a [u8];

    /// The next element; `None` past the last or at a length that overruns the buffer
    /// (`read_whole` tells the two apart).
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.index == self.count {
            return None;
        }
        let name_len = read_u32(self.bytes, 4 + 8 * self.index)?;
        let value_len = read_u32(self.bytes, 8 + 8 * self.index)?;
        let name_end = self.data.checked_add(name_len)?;
        let pair_end = name_end.checked_add(value_len)?.checked_add(2)?;
        if pair_end > self.bytes.len() {
            return None;
        }
        let name = &self.bytes[self.data..name_end];
        self.index += 1;
        self.data = pair_end;
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(value: i64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }

    /// What Envoy sends back for a list: proxy-wasm pairs, each element a name with an empty
    /// value.
    fn answer(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut out = (elements.len() as u32).to_le_bytes().to_vec();
        for element in elements {
            out.extend_from_slice(&(element.len() as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        for element in elements {
            out.extend_from_slice(element);
            out.extend_from_slice(&[0, 0]);
        }
        out
    }

    const SERVER_QUERY: FactsQuery = FactsQuery {
        kind: Some(SpanKind::Server),
        grpc: false,
        body_sizes: false,
    };

    fn server_answer() -> Vec<Vec<u8>> {
        vec![
            int(503),
            b"HTTP/1.1".to_vec(),
            b"checkout".to_vec(),
            b"10.0.0.7:51234".to_vec(),
        ]
    }

    #[test]
    fn every_query_has_its_own_slot() {
        for body_sizes in [false, true] {
            let all = FactsQuery::all(body_sizes);
            for (at, query) in all.iter().enumerate() {
                assert_eq!(query.index(), at, "{query:?}");
                assert_eq!(query.body_sizes, body_sizes);
            }
        }
    }

    #[test]
    fn expressions_look_each_fact_up_once() {
        let client = FactsQuery {
            kind: Some(SpanKind::Client),
            ..SERVER_QUERY
        };
        let unknown = FactsQuery {
            kind: None,
            ..SERVER_QUERY
        };
        let grpc_with_sizes = FactsQuery {
            grpc: true,
            body_sizes: true,
            ..SERVER_QUERY
        };
        let client_lists = "has(upstream.address) ? [response.code, request.protocol, \
                            xds.route_name, upstream.address, xds.cluster_name] : [response.code, \
                            request.protocol, xds.route_name, '', has(xds.cluster_name) ? \
                            xds.cluster_name : '']";
        let unknown_expected = "xds.listener_direction == 2 ? (has(upstream.address) ? [2, \
                                response.code, request.protocol, xds.route_name, upstream.address, \
                                xds.cluster_name] : [2, response.code, request.protocol, \
                                xds.route_name, '', has(xds.cluster_name) ? xds.cluster_name : \
                                '']) : [1, response.code, request.protocol, xds.route_name, \
                                source.address]";
        let cases = [
            (
                SERVER_QUERY,
                "[response.code, request.protocol, xds.route_name, source.address]",
            ),
            (client, client_lists),
            (unknown, unknown_expected),
            (
                grpc_with_sizes,
                "[response.code, request.protocol, xds.route_name, source.address, \
                 response.grpc_status, request.size, response.size]",
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(expression(&query), expected, "{query:?}");
        }
    }

    #[test]
    fn answers_decode_by_the_querys_layout() {
        let server_bytes = answer(&server_answer());
        let server = SpanFacts::decode(&SERVER_QUERY, &server_bytes).unwrap();
        assert_eq!(
            server,
            SpanFacts {
                kind: None,
                status_code: Some(503),
                protocol: Some("HTTP/1.1".into()),
                route_name: Some("checkout".into()),
                downstream_peer: Some("10.0.0.7:51234".into()),
                ..SpanFacts::default()
            }
        );
        let unknown_grpc = FactsQuery {
            kind: None,
            grpc: true,
            body_sizes: true,
        };
        let client = [
            int(2),
            int(200),
            b"HTTP/2".to_vec(),
            Vec::new(),
            b"10.0.0.9:8080".to_vec(),
            b"outbound|payments".to_vec(),
            int(14),
            int(0),
            int(34),
        ];
        assert_eq!(
            SpanFacts::decode(&unknown_grpc, &answer(&client)).unwrap(),
            SpanFacts {
                kind: Some(SpanKind::Client),
                status_code: Some(200),
                protocol: Some("HTTP/2".into()),
                route_name: None,
                upstream_address: Some("10.0.0.9:8080".into()),
                upstream_cluster: Some("outbound|payments".into()),
                grpc_status: Some(14),
                request_body_size: Some(0),
                response_body_size: Some(34),
                ..SpanFacts::default()
            }
        );
        let unknown = FactsQuery {
            kind: None,
            ..SERVER_QUERY
        };
        let inbound = [vec![int(1)], server_answer()].concat();
        assert_eq!(
            SpanFacts::decode(&unknown, &answer(&inbound)).unwrap().kind,
            Some(SpanKind::Server)
        );
    }

    #[test]
    fn malformed_answers_are_refused_whole() {
        let good = answer(&server_answer());
        let with = |at: usize, element: Vec<u8>| {
            let mut elements = server_answer();
            elements[at] = element;
            answer(&elements)
        };
        let unknown = FactsQuery {
            kind: None,
            ..SERVER_QUERY
        };
        let cases: Vec<(&str, FactsQuery, Vec<u8>)> = vec![
            ("empty", SERVER_QUERY, Vec::new()),
            (
                "one element short",
                SERVER_QUERY,
                answer(&server_answer()[..3]),
            ),
            (
                "one element over",
                SERVER_QUERY,
                answer(&[server_answer(), vec![int(1)]].concat()),
            ),
            (
                "a client's layout",
                SERVER_QUERY,
                answer(&[server_answer(), vec![Vec::new()]].concat()),
            ),
            ("a status of 3 bytes", SERVER_QUERY, with(0, vec![1, 2, 3])),
            ("a negative status", SERVER_QUERY, with(0, int(-1))),
            (
                "a string that is not UTF-8",
                SERVER_QUERY,
                with(1, vec![0xff, 0xfe]),
            ),
            (
                "an unknown direction",
                unknown,
                answer(&[vec![int(0)], server_answer()].concat()),
            ),
            ("truncated", SERVER_QUERY, good[..good.len() - 3].to_vec()),
            (
                "trailing bytes",
                SERVER_QUERY,
                [good.clone(), vec![0]].concat(),
            ),
            ("a count larger than the buffer", SERVER_QUERY, {
                let mut bytes = good.clone();
                bytes[0..4].copy_from_slice(&1000u32.to_le_bytes());
                bytes
            }),
            ("a length past the end", SERVER_QUERY, {
                let mut bytes = good.clone();
                bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
                bytes
            }),
        ];
        for (why, query, bytes) in cases {
            assert_eq!(SpanFacts::decode(&query, &bytes), None, "{why}");
        }
    }
}
