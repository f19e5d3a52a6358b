#!/usr/bin/env python3
"""The main job: a three-service mesh in real Envoy on loopback, each service behind its own
sidecar running sidetrace.wasm, traffic in several tracing styles, and the collected traces shown
as terminal waterfalls next to the access log and the filter's counters.

    make demo                # build, run, print, stop
    make demo ARGS=--keep    # leave the mesh running to try it with curl
"""
import argparse
import os
import signal
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from harness import sidecar_config, waterfall  # noqa: E402
from harness.mesh import Mesh  # noqa: E402

TOPOLOGY = {"frontend": ["checkout"], "checkout": ["payments"], "payments": []}


def calls():
    """(title, path, headers): one request per tracing style the mesh must keep in one trace."""
    w3c = uuid.uuid4().hex
    b3 = uuid.uuid4().hex
    xray = f"{int(time.time()):08x}{uuid.uuid4().hex[:24]}"
    return [
        ("W3C traceparent caller", "/checkout/cart/1234", {"traceparent": f"00-{w3c}-00f067aa0ba902b7-01"}),
        ("Zipkin B3 caller", "/checkout/orders/42", {"b3": f"{b3}-e457b5a2e4d86bd1-1"}),
        ("AWS X-Ray caller", "/checkout/orders/43", {"X-Amzn-Trace-Id": f"Root=1-{xray[:8]}-{xray[8:]};Parent=53995c3f42cd8ad8;Sampled=1"}),
        ("no context: a new root", "/checkout/browse", {}),
        ("payments fails: 5xx", "/checkout/pay/fail", {}),
        ("health check: excluded", "/healthz", {}),
    ]


def show(mesh, results):
    receiver = mesh.receiver
    expected = 3 * 5
    receiver.wait_for_spans(expected, timeout=15)
    time.sleep(0.5)
    traces = receiver.traces()
    print()
    for title, path, status in results:
        matching = [spans for spans in traces.values() if any(s.attributes.get("url.path") == path.split("?")[0] for s in spans)]
        print(f"── {title}: GET {path} → {status}")
        if not matching:
            print("   (no trace: excluded from tracing, propagation only)\n")
            continue
        for spans in matching:
            print(waterfall.render(spans))
            print()
    print("── filter counters (all sidecars)")
    for name, value in sorted(mesh.stats().items()):
        print(f"   sidetrace.{name:<26} {value}")
    print()
    print("── access log of the frontend sidecar (trace_id links a log line to its trace)")
    lines = mesh.pods["frontend"].wait_for_access_log("trace_id=", count=2 * len(results) - 1, timeout=5)
    for line in lines:
        print("   " + line)


def failing_path_at_zero_percent():
    """The same mesh at 0 % head sampling with `recordUnsampled`: a failing request's path is
    recorded all the same, as one linked trace; a healthy one leaves nothing."""
    config = sidecar_config.default_filter_config(
        randomSamplingPercentage=0, recordUnsampled={"onError": True, "slowerThanMs": 2000})
    print("\nstarting the same mesh at 0 % sampling with recordUnsampled ...", flush=True)
    with Mesh(TOPOLOGY, filter_config=lambda service: config) as mesh:
        healthy, _ = mesh.get("frontend", "/checkout/cart/77")
        failing, _ = mesh.get("frontend", "/checkout/pay/fail")
        spans = mesh.receiver.wait_for_spans(5, timeout=15)
        time.sleep(0.5)
        print(f"── 0 % sampling: GET /checkout/cart/77 → {healthy} (no trace), "
              f"GET /checkout/pay/fail → {failing}")
        for trace in mesh.receiver.traces().values():
            print(waterfall.render(trace))
        print(f"   recorded because: {sorted({s.attributes.get('sidetrace.recorded_because') for s in spans})}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the mesh running until Ctrl-C")
    args = parser.parse_args()
    print("starting: 3 apps, 3 Envoy sidecars with sidetrace.wasm, 1 OTLP gRPC receiver ...", flush=True)
    with Mesh(TOPOLOGY) as mesh:
        for name, pod in mesh.pods.items():
            print(f"   {name:<9} sidecar inbound {pod.url}  outbound :{pod.outbound_port}  admin :{pod.envoy.admin_port}")
        results = []
        for title, path, headers in calls():
            status, _ = mesh.get("frontend", path, headers)
            results.append((title, path, status))
        show(mesh, results)
        if args.keep:
            url = mesh.pods["frontend"].url
            print(f"\nmesh running. Try:\n   curl -v {url}/checkout/cart/1 -H 'traceparent: 00-{uuid.uuid4().hex}-00f067aa0ba902b7-01'")
            print(f"   curl -s http://127.0.0.1:{mesh.pods['frontend'].envoy.admin_port}/stats | grep sidetrace")
            print("Ctrl-C stops everything.")
            try:
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
            except KeyboardInterrupt:
                pass
    if not args.keep:
        failing_path_at_zero_percent()
    print("stopped.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
