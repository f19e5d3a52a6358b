//! Which functions a request's wasm instructions go to: the mock host samples the module's call
//! stack at random moments while the module's code runs, and each function's share of the
//! samples is its share of the request's instructions. Needs a module that keeps its function
//! names (`benches/wasm_profile.sh` builds one and runs this).
//!
//!     cargo run --release -p sidetrace-mock-host --example profile -- MODULE [sampled|unsampled|unsampled-with-context|root-dir|caller-dir|unsampled-all|sampled-all] [inbound|outbound]
//!
//! `root-dir` is the Envoy benchmarks' "dir" row: every request without context and sampled,
//! the listener's direction in the configuration. `caller-dir` is the same with a sampled
//! caller's `traceparent` and a `tracestate` (`run.py --sampled-caller`).
//!
//! `PROFILE_CONFIG='{...}'` runs the module with that configuration instead (a WasmPlugin's
//! `pluginConfig` as JSON, say); the mode then only chooses the request's context.
//!
//! `CALLERS_OF=alloc` adds which of the module's own functions call those whose name contains
//! `alloc` (through the standard library or not), and how much of their instructions each accounts for.

use sidetrace_mock_host::workload::{exchange_answered, request, INBOUND, OUTBOUND};
use sidetrace_mock_host::MockHost;
use std::collections::HashMap;
use std::time::Duration;

const REQUESTS: usize = 200_000;
const TRACEPARENT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACEPARENT_UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
const SHOWN: usize = 40;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let module = args
        .first()
        .expect("the path of a module with function names");
    let mode = args.get(1).map(String::as_str).unwrap_or("sampled");
    let sampled = !mode.starts_with("unsampled");
    let direction = if args.get(2).map(String::as_str) == Some("outbound") {
        OUTBOUND
    } else {
        INBOUND
    };
    let bytes = std::fs::read(module).expect("read the module");
    let mut host = MockHost::load_for_profiling(&bytes).expect("load the module");
    host.set_property(&["xds", "node", "metadata", "NAME"], b"bench-pod");
    let percentage = if sampled { 100 } else { 0 };
    let direction_set = mode.ends_with("-dir");
    let listener = if direction == OUTBOUND {
        "outbound"
    } else {
        "inbound"
    };
    let direction_config = if direction_set {
        format!(r#","direction":"{listener}""#)
    } else {
        String::new()
    };
    // `-all` modes keep the default formats; the others read and write W3C only.
    let propagation = if mode.ends_with("-all") {
        ""
    } else {
        r#","propagation":{"extract":["tracecontext"],"inject":["tracecontext"]}"#
    };
    let config = std::env::var("PROFILE_CONFIG").unwrap_or_else(|_| {
        format!(
            r#"{{"collector":{{"cluster":"otel"}},"randomSamplingPercentage":{percentage}{propagation}{direction_config}}}"#
        )
    });
    assert!(host.configure(&config).expect("configure"));
    let mut headers = request(match mode {
        "unsampled" | "unsampled-all" | "root-dir" | "sampled-all" => None,
        "unsampled-with-context" => Some(TRACEPARENT_UNSAMPLED),
        _ => Some(TRACEPARENT_SAMPLED),
    });
    if mode == "caller-dir" {
        headers.push(("tracestate", "vendor=1"));
    }
    let response = [(":status", "200")];
    let (_, fuel_before) = host.cost();
    let sampler = host.sample_stacks(Duration::from_micros(20));
    for done in 0..REQUESTS {
        exchange_answered(&mut host, direction, &headers, &response);
        // Exports keep the queue from filling, and their cost shows up in the profile too.
        if done % 512 == 511 {
            host.advance_ms(100);
            host.tick().unwrap();
            for call in host.take_grpc_calls() {
                host.grpc_respond_ok(call.token, &[]).unwrap();
            }
        }
    }
    let stacks = sampler.finish();
    let (_, fuel_after) = host.cost();
    let total: u64 = stacks.values().sum();
    let fuel_per_request = (fuel_after - fuel_before) as f64 / REQUESTS as f64;
    let per_request = |samples: u64| fuel_per_request * samples as f64 / total as f64;
    println!(
        "{REQUESTS} requests, {fuel_per_request:.0} wasm instructions each, {total} samples\n"
    );
    let mut own: HashMap<&str, u64> = HashMap::new();
    let mut inclusive: HashMap<&str, u64> = HashMap::new();
    for (stack, samples) in &stacks {
        if let Some(top) = stack.last() {
            *own.entry(top).or_default() += samples;
        }
        let mut seen: Vec<&str> = Vec::new();
        for frame in stack {
            if !seen.contains(&frame.as_str()) {
                seen.push(frame);
                *inclusive.entry(frame).or_default() += samples;
            }
        }
    }
    let mut callers: HashMap<&str, u64> = HashMap::new();
    if let Ok(callee) = std::env::var("CALLERS_OF") {
        for (stack, samples) in &stacks {
            // The outermost frame matching, so a callee calling itself is counted once.
            if let Some(at) = stack.iter().position(|frame| frame.contains(&callee)) {
                // The nearest frame of the module's own code, past the standard library's.
                let caller = stack[..at]
                    .iter()
                    .rev()
                    .find(|frame| frame.contains("sidetrace") || frame.starts_with("proxy_on"))
                    .map_or("(host)", String::as_str);
                *callers.entry(caller).or_default() += samples;
            }
        }
    }
    let callers_title = format!(
        "calling {}",
        std::env::var("CALLERS_OF").unwrap_or_default()
    );
    let mut tables = vec![("own", &own), ("with callees", &inclusive)];
    if !callers.is_empty() {
        tables.push((callers_title.as_str(), &callers));
    }
    for (title, table) in tables {
        let mut rows: Vec<_> = table.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1));
        println!("{:>10} {:>6}  instructions per request, {title}", "", "%");
        for (name, samples) in rows.into_iter().take(SHOWN) {
            println!(
                "{:>10.0} {:>5.1}%  {}",
                per_request(*samples),
                100.0 * *samples as f64 / total as f64,
                short(name)
            );
        }
        println!();
    }
}

/// A function's name fit for one line: a legacy-mangled Rust path readable, and cut short.
fn short(name: &str) -> String {
    demangle_legacy(name).chars().take(110).collect()
}

/// `_ZN<len><segment>...<len>h<hash>E` as `segment::...`, without the hash; other names as
/// they are (v0-mangled names, `_R...`, stay mangled).
fn demangle_legacy(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut segments = Vec::new();
    while let Some(digits) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&n| n > 0) {
        let len: usize = rest[..digits].parse().unwrap_or(0);
        let segment = &rest[digits..(digits + len).min(rest.len())];
        rest = &rest[(digits + len).min(rest.len())..];
        if !(segment.starts_with('h') && segment.len() == 17) {
            segments.push(
                segment
                    .replace("$LT$", "<")
                    .replace("$GT$", ">")
                    .replace("$u20$", " ")
                    .replace("..", "::"),
            );
        }
    }
    segments.join("::")
}
