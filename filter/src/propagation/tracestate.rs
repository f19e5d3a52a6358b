//! W3C `tracestate` as the editor's draft writes it: at most 32 members, keys of
//! `(lcalpha / DIGIT) 0*255 keychar` where a keychar may be `@`. A list that does not parse is
//! dropped whole, as the OpenTelemetry SDKs do, never member by member. Also OTel's `ot` entry
//! helpers.

use super::Getter;
use crate::context::TraceState;

pub const MAX_MEMBERS: usize = 32;
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 256;
/// The longest list the grammar allows: 32 members of a 256-byte key, `=`, a 256-byte value, and
/// the commas between them. More than this is not scanned but dropped, so a 1 MB header costs no
/// more than a normal one; the margin leaves room for a little optional whitespace.
const SCAN_BUDGET: usize = MAX_MEMBERS * (MAX_KEY_LEN + 1 + MAX_VALUE_LEN + 1) + 1024;
const OTEL_KEY: &str = "ot";

/// Joins every `tracestate` line into one list. Whole or nothing: one member that breaks the
/// grammar, more than 32 members or an input over the scan budget gives an empty state. Empty
/// members and the whitespace around members are allowed and left out; of duplicate keys the
/// first is kept.
pub fn parse(carrier: &impl Getter) -> TraceState {
    let mut out = String::new();
    let mut members = 0usize;
    let mut scanned = 0usize;
    let mut broken = false;
    carrier.get_all("tracestate", &mut |line| {
        if broken {
            return;
        }
        scanned += line.len() + 1;
        if scanned > SCAN_BUDGET {
            broken = true;
            return;
        }
        for member in line.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let Some((key, value)) = member.split_once('=') else {
                broken = true;
                return;
            };
            if !valid_key(key) || !valid_value(value) {
                broken = true;
                return;
            }
            // The limit counts list-members as they came, duplicates included.
            members += 1;
            if members > MAX_MEMBERS {
                broken = true;
                return;
            }
            if find(&out, key).is_some() {
                continue;
            }
            if out.is_empty() {
                // One allocation for the usual single-line header.
                out.reserve(line.len());
            } else {
                out.push(',');
            }
            out.push_str(member);
        }
    });
    if broken {
        return TraceState::default();
    }
    TraceState::from(out)
}

fn key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
}

pub fn valid_key(key: &str) -> bool {
    let key = key.as_bytes();
    let Some(&first) = key.first() else {
        return false;
    };
    key.len() <= MAX_KEY_LEN
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && key.iter().all(|&c| key_char(c))
}

/// Printable ASCII but `,` and `=`, not ending in a space.
pub fn valid_value(value: &str) -> bool {
    let value = value.as_bytes();
    (1..=MAX_VALUE_LEN).contains(&value.len())
        && value
            .iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && value[value.len() - 1] != b' '
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

    fn members_of(count: usize) -> String {
        (0..count)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn keeps_a_valid_list_whole() {
        let cases: &[(&[&str], &str)] = &[
            (&["congo=t61rcWkgMzE"], "congo=t61rcWkgMzE"),
            (
                &["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
                "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            ),
            (&["rojo=1", "congo=2"], "rojo=1,congo=2"),
            (&[" a=1 ,\tb=2 ,, "], "a=1,b=2"),
            (&["a=1,,b=2"], "a=1,b=2"),
            (&["a=1,", ",b=2"], "a=1,b=2"),
            (
                &["tenant@vendor=x,1tenant@v=y"],
                "tenant@vendor=x,1tenant@v=y",
            ),
            (&["foo@=1"], "foo@=1"),
            (&["foo@@bar=1,a=2"], "foo@@bar=1,a=2"),
            (&["foo@bar@baz=1"], "foo@bar@baz=1"),
            (&["t@toolongsystemid1=3"], "t@toolongsystemid1=3"),
            (&["1abc=1"], "1abc=1"),
            (&["a=1,a=2"], "a=1"),
            (&["a=has space,b=trailing "], "a=has space,b=trailing"),
            (&["a= leading"], "a= leading"),
            (&[""], ""),
            (&[" , ,"], ""),
        ];
        for (lines, expected) in cases {
            assert_eq!(parsed(lines), *expected, "{lines:?}");
        }
    }

    #[test]
    fn drops_a_list_that_does_not_parse_whole() {
        let key_256 = format!("a{}", "b".repeat(255));
        let key_257 = format!("a{}", "b".repeat(256));
        let value_257 = "v".repeat(257);
        let cases: Vec<Vec<String>> = [
            &["a=1,B=2"][..],
            &["A=1,b=2"],
            &["a=1,b=x=y"],
            &["a="],
            &["a=,b=2"],
            &["a=1,b"],
            &["@v=1,c=3"],
            &["_a=1"],
            &["a=1", "b=caf\u{e9}"],
            &["a=1", "Bad=2"],
            &["a=1,b=tab\tinside"],
        ]
        .iter()
        .map(|lines| lines.iter().map(|l| l.to_string()).collect())
        .chain([
            vec![members_of(33)],
            vec![members_of(20), members_of(13).replace('k', "j")],
            vec![format!("{},k0=again", members_of(32))],
            vec![format!("{key_257}=1,a=2")],
            vec![format!("a=1,b={value_257}")],
        ])
        .collect();
        for lines in &cases {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert_eq!(parsed(&lines), "", "{lines:?}");
        }
        let longest_key = format!("{key_256}=1");
        assert_eq!(parsed(&[&longest_key]), longest_key);
        assert_eq!(parsed(&[&members_of(32)]), members_of(32));
    }

    #[test]
    fn bounds_the_work_on_huge_input() {
        let huge = "a=b,".repeat(250_000);
        assert_eq!(parsed(&[&huge]), "");
        let blank = ",".repeat(1_000_000);
        assert_eq!(parsed(&["a=1", &blank]), "");
        let longest: Vec<String> = (0..MAX_MEMBERS)
            .map(|i| format!("{:a<256}={}", format!("k{i}"), "v".repeat(256)))
            .collect();
        let longest = longest.join(",");
        assert_eq!(
            parsed(&[&longest]),
            longest,
            "the longest valid list fits the budget"
        );
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
