#!/usr/bin/env python3
"""Envoy with no tracing vs Envoy's native OpenTelemetry tracer vs sidetrace, side by side.

One Envoy worker answers a direct_response route; wrk drives it on loopback; every variant runs
in the same session, interleaved round by round, and exports to the same real gRPC receiver.
Reported per variant (median over rounds): requests/s, p50/p99 latency, Envoy CPU µs per request
(utime+stime from /proc), the CPU it adds over no tracing, and that cost against the native
tracer's (ratio of medians, and the median of per-round ratios; from 5 rounds up, a 90 %
interval for the ratio of medians, by resampling whole rounds), plus spans received. Figures,
not assertions.

sidetrace is configured for the native tracer's work (W3C tracecontext in and out); the "all"
row runs its defaults (six formats read, three written); the "dir" row has the listener's
direction in its config (`direction: inbound`) instead of reading it per request. The
"wasmplugin" rows run the shipped SERVER WasmPlugin's settings, and the same
with `direction: auto`. The "wasm floor" row is `benches/probe-filter` with nothing to do: what
Envoy charges for hosting a filter with sidetrace's callbacks (`host_calls.py` prices each host
call on top of it).

    .venv/bin/python benches/envoy/run.py            # 3 rounds x 5 s per variant
    .venv/bin/python benches/envoy/run.py --quick    # 1 round x 3 s
    .venv/bin/python benches/envoy/run.py --export-only --export-rate 21000
    .venv/bin/python benches/envoy/run.py --caller-context --variant "native 1%" --variant "sidetrace in 1% dir"

`--caller-context` sends every request with an unsampled W3C `traceparent`, as a sidecar inside a
mesh sees most requests; `--sampled-caller` a sampled one with a `tracestate`, as a sidecar
sampling every request sees most; `--variant` (repeatable) runs only the rows named, with "none".

On a machine of two cores or more, Envoy runs on the last core and wrk on the others
(`--no-pin` lets the scheduler place them): with three busy processes on two cores, Envoy's CPU
time per request moved with whatever shared its core. The receiver only counts the spans it
parses: decoding each into Python objects, as the tests' receiver does, made it a third busy
process at 100 % sampling.
"""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))

from harness import istio, paths  # noqa: E402
from harness.collector import OtlpReceiver  # noqa: E402
from harness.envoy import Envoy  # noqa: E402
from harness.ports import free_port  # noqa: E402

import yaml  # noqa: E402

# sidetrace does the native tracer's work (W3C tracecontext in and out) unless the row says
# "all formats" (its defaults: read six formats, write tracecontext + baggage + b3multi).
W3C_ONLY = {"propagation": {"extract": ["tracecontext"], "inject": ["tracecontext"]}}
# The listener's direction from the config instead of a property read per stream, as the native
# tracer takes it from the listener's config.
W3C_ONLY_INBOUND = dict(W3C_ONLY, direction="inbound")
W3C_ONLY_OUTBOUND = dict(W3C_ONLY, direction="outbound")
# The shipped WasmPlugins' settings (istio-manifests/wasmplugin.yaml: six formats read, three
# written, custom tags), their SERVER plugin's, less what the bench sets itself.
WASMPLUGIN_INBOUND = {key: value for key, value in istio.wasm_spec(istio.manifest("wasmplugin.yaml"))["pluginConfig"].items()
                      if key not in ("collector", "randomSamplingPercentage")}
VARIANTS = [
    ("none", None, None, "INBOUND", None),
    ("wasm floor (no-op)", "probe", None, "INBOUND", None),
    ("native 100%", "native", 100, "INBOUND", None),
    ("sidetrace in 100%", "sidetrace", 100, "INBOUND", W3C_ONLY),
    ("sidetrace out 100%", "sidetrace", 100, "OUTBOUND", W3C_ONLY),
    ("sidetrace in 100% dir", "sidetrace", 100, "INBOUND", W3C_ONLY_INBOUND),
    ("sidetrace out 100% dir", "sidetrace", 100, "OUTBOUND", W3C_ONLY_OUTBOUND),
    ("native 1%", "native", 1, "INBOUND", None),
    ("sidetrace in 1%", "sidetrace", 1, "INBOUND", W3C_ONLY),
    ("sidetrace in 1% dir", "sidetrace", 1, "INBOUND", W3C_ONLY_INBOUND),
    ("sidetrace out 1%", "sidetrace", 1, "OUTBOUND", W3C_ONLY),
    ("sidetrace in 1% all", "sidetrace", 1, "INBOUND", None),
    ("sidetrace in 100% all", "sidetrace", 100, "INBOUND", None),
    # Unsampled requests kept until their end, in case they fail or are slow (none does here).
    ("sidetrace in 1% all record-unsampled", "sidetrace", 1, "INBOUND",
     {"recordUnsampled": {"onError": True, "slowerThanMs": 2000}}),
    ("sidetrace in 100% wasmplugin", "sidetrace", 100, "INBOUND", WASMPLUGIN_INBOUND),
    # The shipped SERVER WasmPlugin, and the same with `direction: auto`, as one plugin on both
    # listeners would need.
    ("sidetrace in 1% wasmplugin", "sidetrace", 1, "INBOUND", WASMPLUGIN_INBOUND),
    ("sidetrace in 1% wasmplugin auto", "sidetrace", 1, "INBOUND", dict(WASMPLUGIN_INBOUND, direction="auto")),
]
# A caller's context that was not sampled.
CALLER_TRACEPARENT = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
# A caller that sampled, with a vendor's tracestate: what a sidecar sampling every request sees
# from the hop before it.
SAMPLED_CALLER = [CALLER_TRACEPARENT[:-2] + "01", "tracestate: vendor=1"]


def caller_headers(caller_context: bool, sampled_caller: bool):
    """The headers every request carries for `--caller-context` / `--sampled-caller` (none: a new
    trace each), and how the tables' titles describe them."""
    if sampled_caller:
        return SAMPLED_CALLER, "every request with a sampled caller's traceparent and a tracestate"
    if caller_context:
        return [CALLER_TRACEPARENT], "every request with an unsampled caller's traceparent"
    return [], ""
# Another build of the module (`--before`), run in the same session with the same settings.
BEFORE_WASM = None
PROBE_WASM = os.path.join(paths.REPO, "target", "wasm32-wasip1", "release", "sidetrace_probe_filter.wasm")


def build_probe_filter(features=None):
    """Builds `benches/probe-filter`; `features` (a list) replaces its default callbacks."""
    command = ["cargo", "build", "-q", "--release", "--target", "wasm32-wasip1", "-p", "sidetrace-probe-filter"]
    if features is not None:
        command += ["--no-default-features", "--features", ",".join(features)] if features else ["--no-default-features"]
    subprocess.run(command, cwd=paths.REPO, check=True)
    return PROBE_WASM


def wasm_filter(name, wasm, configuration):
    config = {"name": name, "root_id": name,
              "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm}}}}
    if configuration is not None:
        value = configuration if isinstance(configuration, str) else json.dumps(configuration)
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": config}}


def envoy_config(kind, percentage, direction, port, admin, collector_port, extra=None):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    if kind == "native":
        hcm["tracing"] = {
            "random_sampling": {"value": percentage},
            "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}, "timeout": "1s"},
                "service_name": "bench"}},
        }
    if kind in ("sidetrace", "sidetrace-before"):
        config = {"collector": {"cluster": "otel"}, "randomSamplingPercentage": percentage}
        config.update(extra or {})
        wasm = BEFORE_WASM if kind == "sidetrace-before" else paths.wasm_path()
        hcm["http_filters"].insert(0, wasm_filter("sidetrace", wasm, config))
    if kind == "probe":
        # `extra`: {"wasm": a build of the probe filter, "calls": its configuration}.
        extra = extra or {}
        hcm["http_filters"].insert(0, wasm_filter("probe", extra.get("wasm", PROBE_WASM), extra.get("calls", "")))
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "bench", "traffic_direction": direction,
                           "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
            "clusters": [{"name": "otel", "type": "STATIC", "connect_timeout": "1s",
                          "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                              "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                              "explicit_http_config": {"http2_protocol_options": {}}}},
                          "load_assignment": {"cluster_name": "otel", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                              "socket_address": {"address": "127.0.0.1", "port_value": collector_port}}}}]}]}}],
        },
    }
    return yaml.safe_dump(bootstrap)


def parse_wrk(text):
    def latency_ms(label):
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)\b", text)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    return requests, float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), latency_ms("50"), latency_ms("99")


def cores():
    """The cores Envoy and the load generator get when pinned: (Envoy's, the load's), or None."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[-1]}, set(available[:-1])


def pin(pid, cpus):
    """Pins every thread of process `pid` (Envoy starts its workers before it serves)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except ProcessLookupError:
            pass


def measure(name, kind, percentage, direction, seconds, connections, receiver, extra=None, headers=(), pinned=None):
    port, admin = free_port(), free_port()
    receiver.clear()
    config = envoy_config(kind, percentage, direction, port, admin, receiver.port, extra)
    with Envoy(config, f"bench-{kind}", log_level="warning") as envoy:
        url = f"http://127.0.0.1:{port}/bench/item"
        wrk = ["wrk", "-t1"] + [arg for header in headers for arg in ("-H", header)]
        if pinned:
            envoy_cores, load_cores = pinned
            pin(envoy.process.pid, envoy_cores)
            wrk = ["taskset", "-c", ",".join(map(str, sorted(load_cores)))] + wrk
        # Long enough for V8 to move the module's hot functions to its optimizing tier.
        subprocess.run(wrk + ["-c4", "-d2s", url], capture_output=True)
        before = envoy.cpu_seconds()
        out = subprocess.run(wrk + [f"-c{connections}", f"-d{seconds}s", "--latency", url],
                             capture_output=True, text=True, check=True).stdout
        cpu = envoy.cpu_seconds() - before
        requests, rps, p50, p99 = parse_wrk(out)
        time.sleep(1.5)
        stats = envoy.sidetrace_stats()
        rss = envoy.rss_bytes()
    return {"variant": name, "rps": rps, "p50_ms": p50, "p99_ms": p99, "cpu_us_per_req": cpu / requests * 1e6,
            "spans_received": receiver.span_count(), "requests": requests, "rss_mb": rss / 2**20,
            "dropped": stats.get("spans_dropped", 0), "exported": stats.get("spans_exported", 0)}


def export_throughput(rate, seconds):
    """sidetrace at 100 % on one worker, driven over HTTP/2 at a fixed request rate: each request
    is a span, so this is the export rate the worker sustains at default batch settings. The
    receiver only counts (it is Python, sharing the machine; decoding every span would make it
    the bottleneck)."""
    with OtlpReceiver(count_only=True) as receiver:
        port, admin = free_port(), free_port()
        config = envoy_config("sidetrace", 100, "INBOUND", port, admin, receiver.port, W3C_ONLY)
        with Envoy(config, "bench-export", log_level="warning") as envoy:
            url = f"http://127.0.0.1:{port}/bench/item"
            h2load = ["h2load", "-c", "8", "-m", "16"]
            subprocess.run(h2load + ["-D", "2", url], capture_output=True)
            time.sleep(3)
            before = envoy.sidetrace_stats()
            out = subprocess.run(h2load + ["-D", str(seconds), "--rps", str(max(1, rate // 8)), url],
                                 capture_output=True, text=True, check=True).stdout
            time.sleep(3)
            after = envoy.sidetrace_stats()
    achieved = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in ("spans_sampled", "spans_exported", "spans_dropped")}
    print(f"\nexport, sidetrace 100 %, one worker, HTTP/2 at {rate} req/s for {seconds} s (h2load -c8 -m16): "
          f"{achieved:.0f} spans/s produced; {delta['spans_sampled']} sampled, {delta['spans_exported']} exported, "
          f"{delta['spans_dropped']} dropped, {after.get('spans_queued', 0)} still queued")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--export-rate", type=int, default=21000, help="spans/s for the export run (0 skips it)")
    parser.add_argument("--export-seconds", type=int, default=20)
    parser.add_argument("--export-only", action="store_true", help="run only the export throughput measurement")
    parser.add_argument("--caller-context", action="store_true",
                        help="send every request with an unsampled W3C traceparent")
    parser.add_argument("--sampled-caller", action="store_true",
                        help="send every request with a sampled W3C traceparent and a tracestate")
    parser.add_argument("--variant", action="append", help="a row name to run (repeatable); \"none\" always runs")
    parser.add_argument("--no-pin", action="store_true", help="leave Envoy and wrk where the scheduler puts them")
    parser.add_argument("--before", metavar="WASM",
                        help="another build of the module: each sidetrace row runs again with it, as '<row> before'")
    args = parser.parse_args()
    if args.export_only:
        export_throughput(args.export_rate, args.export_seconds)
        return
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3 if args.quick else 5)
    variants = [v for v in VARIANTS if not args.variant or v[0] == "none" or v[0] in args.variant]
    if args.before:
        global BEFORE_WASM
        BEFORE_WASM = os.path.abspath(args.before)
        variants += [(f"{name} before", "sidetrace-before", *rest)
                     for name, kind, *rest in variants if kind == "sidetrace"]
    headers, described = caller_headers(args.caller_context, args.sampled_caller)
    build_probe_filter()
    results = {name: [] for name, *_ in variants}
    pinned = None if args.no_pin else cores()
    all_cores = os.sched_getaffinity(0)
    if pinned:
        # The receiver's threads, started next, inherit this: they stay off Envoy's core.
        os.sched_setaffinity(0, pinned[1])
    with OtlpReceiver(count_only=True) as receiver:
        for round_index in range(rounds):
            for name, kind, percentage, direction, extra in variants:
                results[name].append(measure(name, kind, percentage, direction, seconds, args.connections, receiver,
                                             extra, headers, pinned))
                print(f"round {round_index + 1}/{rounds} {name:<36} {results[name][-1]['cpu_us_per_req']:.2f} µs/req", file=sys.stderr, flush=True)
    os.sched_setaffinity(0, all_cores)
    median = {name: {k: statistics.median(r[k] for r in runs) if isinstance(runs[0][k], (int, float)) else runs[0][k]
                     for k in runs[0]} for name, runs in results.items()}
    base = median["none"]["cpu_us_per_req"]
    added = {name: m["cpu_us_per_req"] - base for name, m in median.items()}
    print(f"\nEnvoy 1.40, 1 worker, direct_response, wrk -c{args.connections}, {rounds} round(s) x {seconds} s, "
          + (f"{described}, " if described else "")
          + f"{os.cpu_count()} cores ({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}), "
          + (f"Envoy pinned to core {sorted(pinned[0])}, wrk to {sorted(pinned[1])}" if pinned else "not pinned"))
    def per_round_ratio(name, percent):
        # Each round's variants ran minutes apart at most: a ratio within a round cancels the
        # machine's slow drift, and the median of those ratios resists one noisy round.
        ratios = []
        for index in range(rounds):
            none = results["none"][index]["cpu_us_per_req"]
            native = results[f"native {percent}"][index]["cpu_us_per_req"] - none
            if native > 0:
                ratios.append((results[name][index]["cpu_us_per_req"] - none) / native)
        return statistics.median(ratios) if ratios else float("nan")

    def ratio_interval(name, percent):
        # The ratio of medians again over rounds drawn with replacement, each draw keeping a
        # round's variants together: how far the figure could move were the run repeated, as
        # far as its own rounds tell. Fixed seed: the same results print the same interval.
        if rounds < 5:
            return ""
        draw = random.Random(0)
        none_cpu, native_cpu, own_cpu = ([r["cpu_us_per_req"] for r in results[key]]
                                         for key in ("none", f"native {percent}", name))
        ratios = []
        for _ in range(2000):
            picked = [draw.randrange(rounds) for _ in range(rounds)]
            none, native, own = (statistics.median(cpu[i] for i in picked) for cpu in (none_cpu, native_cpu, own_cpu))
            if native > none:
                ratios.append((own - none) / (native - none))
        if len(ratios) < 1000:
            return ""
        ratios.sort()
        return f"{ratios[len(ratios) // 20]:.2f}-{ratios[len(ratios) * 19 // 20]:.2f}"

    # "vs none": the whole CPU per request against no tracing's; "vs native": the CPU added over
    # no tracing against the native tracer's at the same sampling; "90% CI" that ratio's
    # interval by resampled rounds.
    header = (f"{'variant':<36} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req':>10} {'vs none':>7} "
              f"{'added µs':>9} {'vs native':>9} {'90% CI':>9} {'per round':>9} {'spans rcvd':>10} {'RSS MB':>7}")
    print(header)
    print("-" * len(header))
    for name, *_ in variants:
        m = median[name]
        percent = next((word for word in name.split() if word.endswith("%")), "")
        native = added.get(f"native {percent}")
        compared = name.startswith("sidetrace") and native and native > 0
        ratio = f"{added[name] / native:.2f}x" if compared else ""
        round_ratio = f"{per_round_ratio(name, percent):.2f}x" if compared else ""
        interval = ratio_interval(name, percent) if compared else ""
        print(f"{name:<36} {m['rps']:>9.0f} {m['p50_ms']:>7.3f} {m['p99_ms']:>7.3f} {m['cpu_us_per_req']:>10.2f} "
              f"{m['cpu_us_per_req'] / base:>6.2f}x {added[name]:>9.2f} {ratio:>9} {interval:>9} {round_ratio:>9} "
              f"{m['spans_received']:>10.0f} {m['rss_mb']:>7.1f}")
    wasm = paths.wasm_path()
    print(f"\nsidetrace.wasm: {os.path.getsize(wasm)} bytes ({os.path.getsize(wasm) / 1024:.0f} KiB)")
    if BEFORE_WASM:
        print(f"before ({BEFORE_WASM}): {os.path.getsize(BEFORE_WASM)} bytes")
    full = median.get("sidetrace in 100%")
    if full is None:
        return
    print(f"export at 100 %: {full['rps']:.0f} spans/s per worker produced (one per request); over the run "
          f"{full['exported']:.0f} exported, {full['dropped']:.0f} dropped, {full['spans_received']:.0f} received")
    print(f"VM memory per worker (RSS sidetrace - none): {full['rss_mb'] - median['none']['rss_mb']:.1f} MB")
    if args.export_rate:
        export_throughput(args.export_rate, 5 if args.quick else args.export_seconds)


if __name__ == "__main__":
    main()
