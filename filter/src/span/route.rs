//! Span names with bounded cardinality: `{method} {route}`, where the route is Envoy's route name
//! when one names a route of the app's, else the path with id-like segments collapsed to `{id}`.

/// Longest route kept in a span name; longer ones end with `...`.
pub const MAX_ROUTE_LEN: usize = 128;
const ID: &str = "{id}";

/// The names istiod gives the routes it generates rather than takes from a VirtualService: every
/// route of a service without one (`default`, inbound and outbound), and those to hosts outside
/// the registry (`allow_any`, `block_all`). They name no route of the app's, so a span named
/// after them would say nothing (every span of an Istio mesh "GET default").
const GENERATED_ROUTE_NAMES: [&str; 3] = ["default", "allow_any", "block_all"];

fn names_an_app_route(route_name: &str) -> bool {
    !route_name.is_empty() && !GENERATED_ROUTE_NAMES.contains(&route_name)
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

// Byte classes, looked up once per byte of a path: the pass that finds a segment's end also
// counts what the id rules need, instead of a second pass per segment.
const DIGIT: u8 = 1;
const HEX_LETTER: u8 = 2;
const OTHER_LETTER: u8 = 4;
/// `-`, `_`, `=`, `.`: allowed in opaque tokens.
const TOKEN_MARK: u8 = 8;
/// `/`, `?`, `#`: a segment ends there.
const SEGMENT_END: u8 = 16;

static BYTE_CLASSES: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut classes = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        classes[byte] = match b {
            b'0'..=b'9' => DIGIT,
            b'a'..=b'f' | b'A'..=b'F' => HEX_LETTER,
            b'g'..=b'z' | b'G'..=b'Z' => OTHER_LETTER,
            b'-' | b'_' | b'=' | b'.' => TOKEN_MARK,
            b'/' | b'?' | b'#' => SEGMENT_END,
            _ => 0,
        };
        byte += 1;
    }
    classes
}

/// What the id rules count of one segment, byte class by byte class.
#[derive(Default)]
struct SegmentCounts {
    len: usize,
    digits: usize,
    hex: usize,
    letters: usize,
    /// Bytes outside `[0-9A-Za-z-_=.]`.
    others: usize,
}

impl SegmentCounts {
    #[inline(always)]
    fn add(&mut self, class: u8) {
        self.len += 1;
        self.digits += usize::from(class & DIGIT != 0);
        self.hex += usize::from(class & (DIGIT | HEX_LETTER) != 0);
        self.letters += usize::from(class & (HEX_LETTER | OTHER_LETTER) != 0);
        self.others += usize::from(class & (DIGIT | HEX_LETTER | OTHER_LETTER | TOKEN_MARK) == 0);
    }

    /// Numbers, UUIDs, long hex strings, and long opaque tokens that mix letters and digits.
    fn is_id_like(&self, segment: &[u8]) -> bool {
        let len = self.len;
        len > 0
            && (self.digits == len
                || is_uuid(segment)
                || (len >= 16 && self.hex == len)
                || (len >= 24 && self.digits > 0 && self.letters > 0 && self.others == 0))
    }
}

/// Numbers, UUIDs, long hex strings, and long opaque tokens that mix letters and digits.
pub fn is_id_like(segment: &str) -> bool {
    let mut counts = SegmentCounts::default();
    for &byte in segment.as_bytes() {
        counts.add(BYTE_CLASSES[byte as usize]);
    }
    counts.is_id_like(segment.as_bytes())
}

/// Writes the normalized path (query and fragment dropped) into `out`, in one pass over its
/// bytes: every sampled span's name comes through here.
pub fn normalize_path(path: &str, out: &mut String) {
    let start = out.len();
    let bytes = path.as_bytes();
    let mut segment_start = 0;
    let mut counts = SegmentCounts::default();
    let mut at = 0;
    loop {
        let byte = bytes.get(at).copied();
        let class = byte.map_or(SEGMENT_END, |b| BYTE_CLASSES[b as usize]);
        if class != SEGMENT_END {
            counts.add(class);
            at += 1;
            continue;
        }
        let segment = &bytes[segment_start..at];
        if counts.is_id_like(segment) {
            out.push_str(ID);
        } else {
            // A segment lies between ASCII bytes (`/`, `?`, `#`) or the path's ends: its bounds
            // are character boundaries of `path`.
            out.push_str(&path[segment_start..at]);
        }
        if out.len() - start > MAX_ROUTE_LEN {
            let mut cut = start + MAX_ROUTE_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
            return;
        }
        if byte != Some(b'/') {
            break;
        }
        out.push('/');
        at += 1;
        segment_start = at;
        counts = SegmentCounts::default();
    }
    if out.len() == start {
        out.push('/');
    }
}

/// `"{method} {route}"` into `out`.
pub fn span_name(method: &str, route_name: Option<&str>, path: &str, out: &mut String) {
    out.clear();
    out.push_str(method);
    out.push(' ');
    match route_name.filter(|r| names_an_app_route(r)) {
        Some(route) => out.push_str(route),
        None => normalize_path(path, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rules as first written, one test per rule, against which the one-pass code is held.
    fn reference_is_id_like(segment: &str) -> bool {
        let bytes = segment.as_bytes();
        if bytes.is_empty() {
            return false;
        }
        if bytes.iter().all(u8::is_ascii_digit) || is_uuid(bytes) {
            return true;
        }
        if bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit) {
            return true;
        }
        let has_digit = bytes.iter().any(u8::is_ascii_digit);
        let has_alpha = bytes.iter().any(u8::is_ascii_alphabetic);
        let token_chars = bytes
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.'));
        bytes.len() >= 24 && has_digit && has_alpha && token_chars
    }

    fn reference_normalize_path(path: &str) -> String {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let mut out = String::new();
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(if reference_is_id_like(segment) {
                ID
            } else {
                segment
            });
            if out.len() > MAX_ROUTE_LEN {
                let mut cut = MAX_ROUTE_LEN;
                while !out.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.truncate(cut);
                out.push_str("...");
                return out;
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn one_pass_rules_match_the_reference(segment in "[0-9a-zA-Z_=.\\-é/?#%~]{0,40}") {
            prop_assert_eq!(is_id_like(&segment), reference_is_id_like(&segment));
        }

        #[test]
        fn one_pass_path_matches_the_reference(
            path in "(/([0-9]{1,6}|[0-9a-f]{16,40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[a-z]{1,12}|[0-9a-zA-Z_-]{20,30}|é{1,3}|[?#=&]){0,12}){1,3}",
            prefix in "[a-z]{0,3}",
        ) {
            let mut out = prefix.clone();
            normalize_path(&path, &mut out);
            prop_assert_eq!(out, prefix + &reference_normalize_path(&path));
        }
    }

    #[test]
    fn collapses_ids_and_keeps_words() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("/orders/123", "/orders/{id}"),
            ("/orders/123/items/9?expand=1", "/orders/{id}/items/{id}"),
            (
                "/users/550e8400-e29b-41d4-a716-446655440000/cart",
                "/users/{id}/cart",
            ),
            ("/blobs/4bf92f3577b34da6a3ce929d0e0e4736", "/blobs/{id}"),
            ("/sessions/aGVsbG8gd29ybGQgMTIzNDU2Nzg5MA", "/sessions/{id}"),
            ("/api/v2/products", "/api/v2/products"),
            ("/healthz", "/healthz"),
            ("/deadbeef", "/deadbeef"),
            ("/static/app.min.js#top", "/static/app.min.js"),
        ];
        for (path, expected) in cases {
            let mut out = String::new();
            normalize_path(path, &mut out);
            assert_eq!(out, expected, "{path}");
        }
    }

    #[test]
    fn bounds_length() {
        let path = format!("/{}", "segment/".repeat(100));
        let mut out = String::new();
        normalize_path(&path, &mut out);
        assert_eq!(out.len(), MAX_ROUTE_LEN + 3);
        assert!(out.ends_with("..."));
        let mut out = String::new();
        normalize_path(&format!("/{}", "é".repeat(200)), &mut out);
        assert!(out.ends_with("..."));
    }

    #[test]
    fn prefers_the_route_name() {
        let mut out = String::from("stale");
        span_name("GET", Some("orders-by-id"), "/orders/1", &mut out);
        assert_eq!(out, "GET orders-by-id");
        span_name("POST", Some(""), "/orders/1", &mut out);
        assert_eq!(out, "POST /orders/{id}");
        span_name("GET", None, "/", &mut out);
        assert_eq!(out, "GET /");
    }

    #[test]
    fn names_from_the_path_when_istio_generated_the_route() {
        let cases = [
            (Some("default"), "GET /orders/{id}"),
            (Some("allow_any"), "GET /orders/{id}"),
            (Some("block_all"), "GET /orders/{id}"),
            // A VirtualService's route names, `<http route>` or `<http route>.<match>`, are the app's.
            (Some("reviews-v2"), "GET reviews-v2"),
            (Some("reviews-v2.default"), "GET reviews-v2.default"),
            (Some("Default"), "GET Default"),
        ];
        let mut out = String::new();
        for (route_name, expected) in cases {
            span_name("GET", route_name, "/orders/42", &mut out);
            assert_eq!(out, expected, "{route_name:?}");
        }
    }
}
