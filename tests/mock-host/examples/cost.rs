//! What one request costs the filter, counted rather than timed: calls into the host (each one
//! a trip through Envoy's ABI layer, the dominant cost in a real proxy) and wasm instructions
//! executed, per scenario. Deterministic, so two builds compare exactly on a noisy machine.
//!
//!     cargo run --release -p sidetrace-mock-host --example cost
//!     SIDETRACE_WASM=old.wasm cargo run --release -p sidetrace-mock-host --example cost

use sidetrace_mock_host::workload::{
    exchange_answered, request, set_stream_facts, INBOUND, OUTBOUND,
};
use sidetrace_mock_host::MockHost;
const REQUESTS: u64 = 1000;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
const TRACEPARENT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const W3C_ONLY: &str = r#""propagation":{"extract":["tracecontext"],"inject":["tracecontext"]}"#;
const RESPONSE: &[(&str, &str)] = &[(":status", "200")];
/// The Envoy benchmarks' "dir" rows: the listener's direction in the configuration.
const DIRECTION_INBOUND: &str = r#""direction":"inbound""#;

struct Scenario {
    name: &'static str,
    config: String,
    direction: i64,
    traceparent: Option<&'static str>,
    /// A caller's `tracestate`, sent with its `traceparent`.
    tracestate: Option<&'static str>,
}

fn config(percentage: u32, extra: &str) -> String {
    let mut config =
        format!(r#"{{"collector":{{"cluster":"otel"}},"randomSamplingPercentage":{percentage}"#);
    if !extra.is_empty() {
        config.push(',');
        config.push_str(extra);
    }
    config.push('}');
    config
}

fn host(plugin_config: &str) -> MockHost {
    let mut host = MockHost::load().expect("load the module (make build)");
    host.set_property(&["xds", "node", "metadata", "NAME"], b"bench-pod");
    assert!(
        host.configure(plugin_config).expect("configure"),
        "config rejected: {plugin_config}"
    );
    host
}

fn exchange(host: &mut MockHost, scenario: &Scenario, headers: &[(&str, &str)]) {
    exchange_answered(host, scenario.direction, headers, RESPONSE);
}

/// Where a request's wasm instructions go, callback by callback: (context creation, request
/// headers, response headers, stream end), averaged.
fn per_callback(scenario: &Scenario) -> [f64; 4] {
    let mut host = host(&scenario.config);
    let mut headers = request(scenario.traceparent);
    headers.extend(scenario.tracestate.map(|value| ("tracestate", value)));
    exchange(&mut host, scenario, &headers);
    let mut spent = [0u64; 4];
    for _ in 0..REQUESTS {
        let mut mark = host.cost().1;
        let mut lap = |host: &MockHost, at: usize| {
            let now = host.cost().1;
            spent[at] += now - mark;
            mark = now;
        };
        let stream = host.new_stream().unwrap();
        lap(&host, 0);
        set_stream_facts(&mut host, stream, scenario.direction);
        host.request_headers(stream, &headers).unwrap();
        lap(&host, 1);
        host.set_stream_int_property(stream, &["response", "code"], 200);
        host.response_headers(stream, RESPONSE).unwrap();
        lap(&host, 2);
        host.finish_stream(stream).unwrap();
        lap(&host, 3);
    }
    spent.map(|fuel| fuel as f64 / REQUESTS as f64)
}

/// Host calls and instructions per request, exports excluded.
fn per_request(scenario: &Scenario) -> (f64, f64) {
    let mut host = host(&scenario.config);
    let mut headers = request(scenario.traceparent);
    headers.extend(scenario.tracestate.map(|value| ("tracestate", value)));
    exchange(&mut host, scenario, &headers);
    let (calls_before, fuel_before) = host.cost();
    for _ in 0..REQUESTS {
        exchange(&mut host, scenario, &headers);
    }
    let (calls, fuel) = host.cost();
    (
        (calls - calls_before) as f64 / REQUESTS as f64,
        (fuel - fuel_before) as f64 / REQUESTS as f64,
    )
}

/// Host calls, instructions and payload bytes per span for batching and export: 2048 queued
/// spans leave as four 512-span exports that the collector accepts.
fn per_exported_span() -> (f64, f64, f64) {
    let mut host = host(&config(100, W3C_ONLY));
    for _ in 0..2048 {
        host.exchange(INBOUND, &request(None), 200).unwrap();
    }
    let (calls_before, fuel_before) = host.cost();
    let mut exported = 0;
    let mut payload_bytes = 0;
    for _ in 0..50 {
        host.advance_ms(100);
        host.tick().unwrap();
        for call in host.take_grpc_calls() {
            payload_bytes += call.payload.len();
            host.grpc_respond_ok(call.token, &[]).unwrap();
            exported += 1;
        }
    }
    assert_eq!(exported, 4, "2048 spans leave as four full batches");
    let (calls, fuel) = host.cost();
    (
        (calls - calls_before) as f64 / 2048.0,
        (fuel - fuel_before) as f64 / 2048.0,
        payload_bytes as f64 / 2048.0,
    )
}

fn main() {
    let scenarios = [
        Scenario {
            name: "unsampled, W3C only, new root",
            config: config(0, W3C_ONLY),
            direction: INBOUND,
            traceparent: None,
            tracestate: None,
        },
        Scenario {
            name: "unsampled, W3C only, caller's context",
            config: config(0, W3C_ONLY),
            direction: INBOUND,
            traceparent: Some(TRACEPARENT),
            tracestate: None,
        },
        Scenario {
            name: "unsampled, default formats",
            config: config(0, ""),
            direction: INBOUND,
            traceparent: Some(TRACEPARENT),
            tracestate: None,
        },
        Scenario {
            name: "unsampled, direction set in config",
            config: config(0, &format!(r#"{W3C_ONLY},"direction":"inbound""#)),
            direction: INBOUND,
            traceparent: Some(TRACEPARENT),
            tracestate: None,
        },
        Scenario {
            name: "sampled server span, W3C only",
            config: config(100, W3C_ONLY),
            direction: INBOUND,
            traceparent: Some(TRACEPARENT_SAMPLED),
            tracestate: None,
        },
        Scenario {
            name: "sampled server, W3C, caller's tracestate",
            config: config(100, W3C_ONLY),
            direction: INBOUND,
            traceparent: Some(TRACEPARENT_SAMPLED),
            tracestate: Some("vendor=1"),
        },
        Scenario {
            name: "sampled client span, W3C only",
            config: config(100, W3C_ONLY),
            direction: OUTBOUND,
            traceparent: Some(TRACEPARENT_SAMPLED),
            tracestate: None,
        },
        Scenario {
            name: "sampled server span, default formats",
            config: config(100, ""),
            direction: INBOUND,
            traceparent: Some(TRACEPARENT_SAMPLED),
            tracestate: None,
        },
        Scenario {
            name: "sampled new root, direction set",
            config: config(100, &format!("{W3C_ONLY},{DIRECTION_INBOUND}")),
            direction: INBOUND,
            traceparent: None,
            tracestate: None,
        },
        Scenario {
            name: "sampled caller, direction set",
            config: config(100, &format!("{W3C_ONLY},{DIRECTION_INBOUND}")),
            direction: INBOUND,
            traceparent: Some(TRACEPARENT_SAMPLED),
            tracestate: Some("vendor=1"),
        },
    ];
    println!(
        "{:<40} {:>16} {:>18}",
        "per request", "host calls", "wasm instructions"
    );
    for scenario in &scenarios {
        let (calls, fuel) = per_request(scenario);
        println!("{:<40} {calls:>16.1} {fuel:>18.0}", scenario.name);
    }
    println!(
        "\n{:<40} {:>9} {:>9} {:>9} {:>9}",
        "wasm instructions by callback", "create", "request", "response", "end"
    );
    for scenario in &scenarios {
        let [create, request, response, end] = per_callback(scenario);
        println!(
            "{:<40} {create:>9.0} {request:>9.0} {response:>9.0} {end:>9.0}",
            scenario.name
        );
    }
    let (calls, fuel, bytes) = per_exported_span();
    println!(
        "{:<40} {calls:>16.3} {fuel:>18.0}",
        "batching + export, per span"
    );
    println!("\nOTLP bytes per exported span (server span, W3C, mock host's request): {bytes:.0}");
}
