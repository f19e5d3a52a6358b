//! W3C `tracestate`: validated list members, at most 32, with OTel's `ot` entry helpers.

use super::Getter;
use crate::context::TraceState;

pub const MAX_MEMBERS: usize = 32;
/// Input beyond this many bytes is not scanned: an oversized header takes no more work than a
/// normal one.
const SCAN_BUDGET: usize = 8 * 1024;
const OTEL_KEY: &str = "ot";

/// Joins every `tracestate` line, keeps the valid members (first of duplicate keys), 32 at most.
pub fn parse(carrier: &impl Getter) -> TraceState {
    let mut out = String::new();
    let mut members = 0usize;
    let mut scanned = 0usize;
    carrier.get_all("tracestate", &mut |line| {
        for member in line.split(',') {
            scanned += member.len() + 1;
            if scanned > SCAN_BUDGET || members == MAX_MEMBERS {
                return;
            }
            let member = member.trim_matches([' ', '\t']);
            let Some((key, value)) = member.split_once('=') else {
                continue;
            };
            if !valid_key(key) || !valid_value(value) || find(&out, key).is_some() {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member);
            members += 1;
        }
    });
    TraceState::from(out)
}

fn key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

pub fn valid_key(key: &str) -> bool {
    let key = key.as_bytes();
    match key.iter().position(|&c| c == b'@') {
        None => {
            (1..=256).contains(&key.len())
                && key[0].is_ascii_lowercase()
                && key.iter().copied().all(key_char)
        }
        Some(at) => {
            let (t, s) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().copied().all(key_char)
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().copied().all(key_char)
        }
    }
}

pub fn valid_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && value
            .bytes()
            .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && !value.ends_with(' ')
}

fn members(serialized: &str) -> impl Iterator<Item = (&str, &str)> {
    serialized
        .split(',')
        .filter_map(|member| member.split_once('='))
}

fn find<'a>(serialized: &'a str, key: &str) -> Option<&'a str> {
    members(serialized).find(|(k, _)| *k == key).map(|(_, v)| v)
}

pub fn get<'a>(state: &'a TraceState, key: &str) -> Option<&'a str> {
    find(state.as_str(), key)
}

/// Puts `key=value` first (the W3C rule for an updated entry), removing the old one. An invalid
/// key or value leaves the state as it was: what goes out is always valid.
pub fn upsert(state: &TraceState, key: &str, value: &str) -> TraceState {
    if !valid_key(key) || !valid_value(value) {
        return state.clone();
    }
    let mut out = String::with_capacity(state.as_str().len() + key.len() + value.len() + 2);
    out.push_str(key);
    out.push('=');
    out.push_str(value);
    for (k, v) in members(state.as_str())
        .filter(|(k, _)| *k != key)
        .take(MAX_MEMBERS - 1)
    {
        out.push(',');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    TraceState::from(out)
}

/// One sub-key of the OTel entry, `ot=th:c;rv:0123...`.
pub fn ot_subkey<'a>(state: &'a TraceState, sub: &str) -> Option<&'a str> {
    get(state, OTEL_KEY)?
        .split(';')
        .filter_map(|field| field.split_once(':'))
        .find(|(k, _)| *k == sub)
        .map(|(_, v)| v)
}

/// Sets the OTel sampling threshold `th` (1 to 14 lowercase hex digits), keeping `rv` and every
/// other sub-key as they came.
pub fn with_ot_threshold(state: &TraceState, threshold_hex: &str) -> TraceState {
    let well_formed = (1..=14).contains(&threshold_hex.len())
        && threshold_hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if !well_formed {
        return state.clone();
    }
    let mut entry = format!("th:{threshold_hex}");
    if let Some(existing) = get(state, OTEL_KEY) {
        for field in existing
            .split(';')
            .filter(|f| !f.starts_with("th:") && !f.is_empty())
        {
            entry.push(';');
            entry.push_str(field);
        }
    }
    upsert(state, OTEL_KEY, &entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::Headers;

    fn parsed(lines: &[&str]) -> String {
        let headers = Headers::from_pairs(lines.iter().map(|l| ("tracestate", *l)));
        parse(&headers).as_str().to_string()
    }

    #[test]
    fn keeps_valid_members_in_order() {
        let cases: &[(&[&str], &str)] = &[
            (&["congo=t61rcWkgMzE"], "congo=t61rcWkgMzE"),
            (
                &["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
                "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            ),
            (&["rojo=1", "congo=2"], "rojo=1,congo=2"),
            (&[" a=1 ,\tb=2 ,, "], "a=1,b=2"),
            (
                &["tenant@vendor=x,1tenant@v=y"],
                "tenant@vendor=x,1tenant@v=y",
            ),
            (&["a=1,a=2"], "a=1"),
            (&["A=1,b=2"], "b=2"),
            (&["a=,b=2"], "b=2"),
            (&["a=x=y,b=2"], "b=2"),
            (&["a=1,b"], "a=1"),
            (&["@v=1,t@=2,t@toolongsystemid1=3,c=3"], "c=3"),
            (&["a=has space,b=trailing "], "a=has space,b=trailing"),
            (&["a=caf\u{e9}"], ""),
            (&[""], ""),
        ];
        for (lines, expected) in cases {
            assert_eq!(parsed(lines), *expected, "{lines:?}");
        }
    }

    /// Lines that are valid as they stand come back whole; the rest lose what is invalid.
    #[test]
    fn a_valid_line_is_kept_as_it_is() {
        let thirty_three: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let thirty_two = thirty_three[..32].join(",");
        let cases = [
            ("a=1", true),
            ("a=1,b=2", true),
            ("a=1,a=2", false),
            ("a=1,", false),
            (",a=1", false),
            ("a=1,,b=2", false),
            ("a=b=c", false),
            ("a@=1", false),
            ("t@v=1,t@v=2,t@w=3", false),
            ("a=1 ", false),
            (" a=1", false),
            ("a=,b=1", false),
            ("=1", false),
            ("a", false),
            ("ab=1,a=2,b=3", true),
            (&thirty_two, true),
            (&thirty_three.join(","), false),
        ];
        for (line, kept) in cases {
            assert_eq!(parsed(&[line]) == line, kept, "{line:?}");
        }
    }

    #[test]
    fn bounds_members_and_work() {
        let many: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
        let state = parsed(&[&many.join(",")]);
        assert_eq!(state.split(',').count(), MAX_MEMBERS);
        assert!(state.starts_with("k0=v,") && state.ends_with("k31=v"));
        let huge = "a=b,".repeat(250_000);
        let state = parsed(&[&huge]);
        assert_eq!(state, "a=b");
    }

    #[test]
    fn upsert_moves_the_entry_first() {
        let state = TraceState::new("a=1,b=2,c=3");
        assert_eq!(upsert(&state, "b", "9").as_str(), "b=9,a=1,c=3");
        assert_eq!(upsert(&TraceState::default(), "x", "1").as_str(), "x=1");
        assert_eq!(get(&state, "c"), Some("3"));
        assert_eq!(get(&state, "d"), None);
    }

    #[test]
    fn otel_entry_keeps_rv_and_replaces_th() {
        let state = TraceState::new("vendor=1,ot=rv:0123456789abcd;th:4");
        assert_eq!(ot_subkey(&state, "rv"), Some("0123456789abcd"));
        assert_eq!(ot_subkey(&state, "th"), Some("4"));
        let updated = with_ot_threshold(&state, "c");
        assert_eq!(updated.as_str(), "ot=th:c;rv:0123456789abcd,vendor=1");
        assert_eq!(
            with_ot_threshold(&TraceState::default(), "8").as_str(),
            "ot=th:8"
        );
        assert_eq!(
            with_ot_threshold(&state, "C"),
            state,
            "uppercase is not a threshold"
        );
        assert_eq!(with_ot_threshold(&state, ""), state);
        assert_eq!(upsert(&state, "Bad", "1"), state);
        assert_eq!(upsert(&state, "k", "a,b"), state);
    }
}
