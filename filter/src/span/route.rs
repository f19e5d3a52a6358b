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

/// Numbers, UUIDs, long hex strings, and long opaque tokens that mix letters and digits. Each
/// test gives up at the first byte that rules it out: most segments are words.
pub fn is_id_like(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let is_number = !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit);
    is_number
        || is_uuid(bytes)
        || (bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit))
        || (bytes.len() >= 24 && is_opaque_token(bytes))
}

/// Letters and digits, both, and nothing else but `-`, `_`, `=` and `.`.
fn is_opaque_token(bytes: &[u8]) -> bool {
    bytes.iter().any(u8::is_ascii_digit)
        && bytes.iter().any(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.'))
}

/// Writes the normalized path (query and fragment dropped) into `out`.
pub fn normalize_path(target: &str, out: &mut String) {
    let start = out.len();
    let mut rest = crate::span::http::path_of(target);
    loop {
        let (segment, next) = match rest.bytes().position(|b| b == b'/') {
            Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
            None => (rest, None),
        };
        out.push_str(if is_id_like(segment) { ID } else { segment });
        if out.len() - start > MAX_ROUTE_LEN {
            let mut cut = start + MAX_ROUTE_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
            return;
        }
        let Some(next) = next else { break };
        out.push('/');
        rest = next;
    }
    if out.len() == start {
        out.push('/');
    }
}

/// `"{method} {route}"` into `out`, in place of what it held.
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

    #[test]
    fn id_rules() {
        let cases = [
            ("", false),
            ("123", true),
            ("550e8400-e29b-41d4-a716-446655440000", true),
            ("550e8400-e29b-41d4-a716", false),
            ("4bf92f3577b34da6", true),
            ("4bf92f3577b34da", false),
            ("aGVsbG8gd29ybGQgMTIzNDU2", true),
            ("aGVsbG8gd29ybGQgMTIzNDU", false),
            ("aGVsbG8gd29ybGQgMTIzNDU2~", false),
            ("a-b_c=d.e1234567890123456", true),
            ("abcdefghijklmnopqrstuvwxyz", false),
            ("é123", false),
        ];
        for (segment, expected) in cases {
            assert_eq!(is_id_like(segment), expected, "{segment}");
        }
    }

    #[test]
    fn writes_after_what_out_holds() {
        let mut out = String::from("GET ");
        normalize_path("/orders/1?x#y", &mut out);
        assert_eq!(out, "GET /orders/{id}");
        let mut out = String::from("x");
        normalize_path(&format!("/{}", "z".repeat(200)), &mut out);
        assert_eq!(out, format!("x/{}...", "z".repeat(MAX_ROUTE_LEN - 1)));
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
