#!/usr/bin/env python3
"""What each proxy-wasm host call costs Envoy, counted under callgrind, and the least a filter
doing the native tracer's work must therefore add per request.

`benches/probe-filter` makes only the host calls its configuration names, on every request's
headers; each row below is that filter making four calls of one kind, against the same filter
with nothing to do, counted like `instructions.py` (3,000 HTTP/1.1 requests after a warm-up,
every thread). The floor rows build the filter with fewer stream callbacks exported, which
prices the callbacks themselves. The native tracer's rows are measured in the same run.

The lower bounds add up calls only (no wasm code, no export): what a proxy-wasm filter cannot
avoid paying in Envoy 1.40's ABI 0.2.1 to (a) propagate W3C context on an unsampled request
without context, and (b) record a server span carrying what the native tracer's span carries
(request headers, status, protocol, peer address, start and end time) and write traceparent,
reading the facts one attribute at a time or all at once through Envoy's `expr_evaluate`. The
last two sections split sidetrace's own cost in two such requests into its calls, made by the
probe filter alone, and the rest.

    .venv/bin/python benches/envoy/host_calls.py
    .venv/bin/python benches/envoy/host_calls.py --requests 1000 --no-native
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import instructions  # noqa: E402
import run  # noqa: E402
from run import OtlpReceiver  # noqa: E402

CALLS_PER_ROW = 4
# The facts the native tracer's span carries from the stream's end, as one CEL expression.
NATIVE_FACTS = "[response.code, request.protocol, source.address]"
# Row key -> (probe filter configuration word, CEL expression it evaluates, what the row prices).
CALLS = {
    "absent": ("absent", None, "header read, header absent (no value handed over)"),
    "present": ("present", None, "header read, header present (`:path`)"),
    "pairs": ("pairs", None, "all request headers at once (h2load's 6 headers)"),
    "property": ("property", None, "attribute read (`request.protocol`)"),
    "replace": ("replace", None, "header replace (traceparent-sized value)"),
    "add": ("add", None, "header add (traceparent-sized value)"),
    "remove": ("remove", None, "header remove, header absent"),
    "time": ("time", None, "current time"),
    # Against `pairs` plus one `replace` and three `add`s: four trace headers written as one call.
    "setpairs": ("setpairs", None, "all request headers read, then set back with 4 more as one map"),
    "expr": ("done.expr", "[1]", "CEL expression evaluated at the stream's end (`[1]`)"),
    "expr3": ("done.expr", NATIVE_FACTS, "the same, listing the 3 facts of the native span"),
}
# The facts of a sampled span whose direction is left to the listener, as `span_facts` writes them.
SIDETRACE_FACTS = ("xds.listener_direction == 2 ? (has(upstream.address) ? [2, response.code, request.protocol, "
                   "xds.route_name, upstream.address, xds.cluster_name] : [2, response.code, request.protocol, "
                   "xds.route_name, '', has(xds.cluster_name) ? xds.cluster_name : '']) : [1, response.code, "
                   "request.protocol, xds.route_name, source.address]")
# Every host call sidetrace makes for a sampled inbound request without context (the benchmark's
# request): headers read, traceparent added, the clock at both ends, the facts at the end.
SIDETRACE_CALLS = f"pairs:1 add:1 time:1 done.time:1 done.expr:1 | {SIDETRACE_FACTS}"
# Every host call sidetrace makes for a request without context that it does not sample, W3C only:
# `traceparent` looked up, the new one added, a stray `tracestate` removed.
SIDETRACE_ROOT_CALLS = "absent:1 add:1 remove:1"
# That request in sidetrace itself: sampling nothing, so every request is such a root.
SIDETRACE_UNSAMPLED = ("sidetrace in 0% dir", "sidetrace", 0, "INBOUND", run.W3C_ONLY_INBOUND)


# Probe builds by the stream callbacks they export besides `proxy_on_request_headers`: each one
# more than the one before, ending with sidetrace's; then the least a filter that records spans
# can export (a span ends after its request's headers).
CALLBACK_FLOORS = [("request headers", []), ("+ context created", ["context-create"]),
                   ("+ done", ["context-create", "done"]),
                   ("+ response headers", ["context-create", "done", "response-headers"])]
SIDETRACE_FLOOR = CALLBACK_FLOORS[-1][0]
LEAST_FLOOR = ("request headers + done only", ["done"])


def probe(calls, wasm=None):
    """A run.py variant: the probe filter making `calls` (the build `wasm`, or the one
    `run.build_probe_filter()` made last)."""
    extra = {"calls": calls}
    if wasm:
        extra["wasm"] = wasm
    return ("probe", "probe", None, "INBOUND", extra)


def probe_configuration(key):
    word, expression, _ = CALLS[key]
    configuration = f"{word}:{CALLS_PER_ROW}"
    return f"{configuration} | {expression}" if expression else configuration


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--no-native", action="store_true", help="skip the native tracer's rows")
    args = parser.parse_args()
    instructions.require_tools()
    with tempfile.TemporaryDirectory() as builds:
        floors = {}
        for name, features in CALLBACK_FLOORS + [LEAST_FLOOR]:
            floors[name] = os.path.join(builds, f"probe-{'-'.join(features) or 'bare'}.wasm")
            shutil.copy(run.build_probe_filter(features), floors[name])
        full = floors[SIDETRACE_FLOOR]

        counted = {}
        with OtlpReceiver(count_only=True) as receiver, tempfile.TemporaryDirectory() as workdir:
            def count(key, variant):
                counted[key] = instructions.count(variant, args.requests, receiver, workdir)
                print(f"{key:<28} {counted[key]:>10,.0f} instructions/request", file=sys.stderr, flush=True)

            count("none", run.VARIANTS[0])
            for name, wasm in floors.items():
                count(name, probe("", wasm))
            for key in CALLS:
                count(key, probe(probe_configuration(key), full))
            count("sidetrace's calls", probe(SIDETRACE_CALLS, full))
            count("sidetrace in 100%", next(v for v in run.VARIANTS if v[0] == "sidetrace in 100%"))
            count("sidetrace's root calls", probe(SIDETRACE_ROOT_CALLS, full))
            count(SIDETRACE_UNSAMPLED[0], SIDETRACE_UNSAMPLED)
            if not args.no_native:
                for variant in run.VARIANTS:
                    if variant[0] in ("native 1%", "native 100%"):
                        count(variant[0], variant)

    none = counted["none"]
    floor = counted[SIDETRACE_FLOOR]
    print(f"\nEnvoy 1.40 under callgrind, 1 worker, direct_response, {args.requests} HTTP/1.1 requests (h2load -c2) "
          f"after 1000 to warm up; all threads")
    print(f"\n{'stream callbacks exported (nothing done)':<52} {'added/request':>14}")
    previous = none
    for name, _ in CALLBACK_FLOORS:
        print(f"  {name:<50} {counted[name] - none:>14,.0f}   (this callback: {counted[name] - previous:,.0f})")
        previous = counted[name]
    print(f"  {LEAST_FLOOR[0]:<50} {counted[LEAST_FLOOR[0]] - none:>14,.0f}")
    cost = {key: (counted[key] - floor) / CALLS_PER_ROW for key in CALLS}
    print(f"\n{'host call, made on every request':<52} {'per call':>14}")
    for key, (_, _, label) in CALLS.items():
        print(f"  {label:<50} {cost[key]:>14,.0f}")
    print("  (a value handed back costs a call into the VM's allocator: present - absent = "
          f"{cost['present'] - cost['absent']:,.0f})")

    floor_added = floor - none
    unsampled = floor_added + cost["absent"] + cost["add"]
    read_one_by_one = floor_added + cost["pairs"] + cost["add"] + cost["present"] + 2 * cost["property"] \
        + 2 * cost["time"]
    one_expression = floor_added + cost["pairs"] + cost["add"] + cost["expr3"] + 2 * cost["time"]
    print("\nleast a filter must add, host calls only:")
    least = counted[LEAST_FLOOR[0]] - none + cost["absent"] + cost["add"]
    rows = [("unsampled, no incoming context: callbacks + traceparent probed + written", unsampled, "native 1%"),
            ("the same with only the callbacks any span recorder needs (request headers, done)", least, "native 1%"),
            ("  + a stray tracestate discarded as W3C asks, looked up first", least + cost["absent"], "native 1%"),
            ("  + the same removed blind", least + cost["remove"], "native 1%"),
            ("server span as native's, facts read one by one: callbacks + headers + traceparent written "
             "+ :status + protocol + peer + 2 clock reads", read_one_by_one, "native 100%"),
            ("the same span, its end-of-stream facts in one CEL expression", one_expression, "native 100%")]
    for label, bound, native_name in rows:
        line = f"  {label}: {bound:,.0f}"
        if native_name in counted:
            native = counted[native_name] - none
            line += f"; {native_name} adds {native:,.0f} ({bound / native:.2f}x)"
        print(line)

    split(counted, "sidetrace's calls", "sidetrace in 100%", "native 100%",
          "sidetrace inbound at 100 %, split (added per request)", "its wasm code, export, ticks")
    split(counted, "sidetrace's root calls", SIDETRACE_UNSAMPLED[0], "native 1%",
          "sidetrace inbound, a new trace it does not sample (0 %, W3C only, `direction` set), split",
          "its wasm code")


def split(counted, calls_key, sidetrace_key, native_key, title, rest):
    """Prints sidetrace's added cost for one kind of request against the probe filter making
    exactly its host calls, and both against the native tracer's."""
    none = counted["none"]
    calls_only = counted[calls_key] - none
    sidetrace = counted[sidetrace_key] - none
    print(f"\n{title}:")
    print(f"  its host calls, made by the probe filter with no other code: {calls_only:,.0f}")
    print(f"  sidetrace itself: {sidetrace:,.0f}; the rest ({rest}): {sidetrace - calls_only:,.0f}")
    if native_key in counted:
        native = counted[native_key] - none
        print(f"  against {native_key} ({native:,.0f}): calls {calls_only / native:.2f}x, all {sidetrace / native:.2f}x")


if __name__ == "__main__":
    main()
