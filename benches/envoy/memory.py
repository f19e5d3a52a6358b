#!/usr/bin/env python3
"""The module's own memory in Envoy, next to Envoy's RSS: the VM's linear memory, which the filter
publishes as the gauge `sidetrace.linear_memory_bytes` (the memory's size, read by the module),
in three states of one `run.py` row ("sidetrace in 100% all", the default configuration, unless
`--variant` names another):

- idle: Envoy started, a few requests served, nothing queued;
- loaded: after `--seconds` of wrk (8 connections) with the test receiver answering;
- full queue: a second Envoy whose collector cluster points at a port nobody listens on, after
  enough requests to fill `batch.maxQueueSize` (spans wait and retry, then are dropped).

A wasm memory never shrinks: the gauge is the high-water mark of the module's heap. V8's
compiled code and its own heap are in Envoy's RSS, not in the gauge; `none` (no tracing) is the
RSS reference. Figures, not assertions.

    .venv/bin/python benches/envoy/memory.py
    .venv/bin/python benches/envoy/memory.py --variant "sidetrace in 100%" --seconds 5
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402
from run import Envoy, OtlpReceiver, envoy_config, free_port  # noqa: E402

IDLE_REQUESTS = 20


def state(envoy):
    stats = envoy.sidetrace_stats()
    return {"memory": stats.get("linear_memory_bytes", 0), "queued": stats.get("spans_queued", 0),
            "dropped": stats.get("spans_dropped", 0), "exported": stats.get("spans_exported", 0),
            "rss": envoy.rss_bytes()}


def requests(url, count):
    subprocess.run(["h2load", "--h1", "-c", "2", "-n", str(count), url], capture_output=True, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="sidetrace in 100% all", help="a run.py row of sidetrace")
    parser.add_argument("--seconds", type=int, default=5, help="the loaded state's wrk run")
    args = parser.parse_args()
    variants = {variant[0]: variant for variant in run.VARIANTS}
    if args.variant not in variants or variants[args.variant][1] != "sidetrace":
        parser.error(f"no sidetrace row of run.py named {args.variant!r}")
    _, kind, percentage, direction, extra = variants[args.variant]
    queue_size = (extra or {}).get("batch", {}).get("maxQueueSize", 4096)
    rows = []
    with OtlpReceiver(count_only=True) as receiver:
        port, admin = free_port(), free_port()
        with Envoy(envoy_config(None, None, direction, port, admin, receiver.port), "memory-none",
                   log_level="warning") as envoy:
            requests(f"http://127.0.0.1:{port}/bench/item", IDLE_REQUESTS)
            time.sleep(1)
            rows.append(("none (no tracing)", {"memory": None, "queued": None, "dropped": None,
                                               "exported": None, "rss": envoy.rss_bytes()}))
        port, admin = free_port(), free_port()
        config = envoy_config(kind, percentage, direction, port, admin, receiver.port, extra)
        with Envoy(config, "memory-sidetrace", log_level="warning") as envoy:
            url = f"http://127.0.0.1:{port}/bench/item"
            requests(url, IDLE_REQUESTS)
            time.sleep(1)
            rows.append(("idle", state(envoy)))
            subprocess.run(["wrk", "-t1", "-c8", f"-d{args.seconds}s", url], capture_output=True, check=True)
            time.sleep(1.5)
            rows.append((f"after {args.seconds} s of wrk", state(envoy)))
    # Nobody listens on the collector's port: every export fails and the queue fills.
    port, admin, dead = free_port(), free_port(), free_port()
    config = envoy_config(kind, percentage, direction, port, admin, dead, extra)
    with Envoy(config, "memory-full-queue", log_level="error") as envoy:
        url = f"http://127.0.0.1:{port}/bench/item"
        requests(url, IDLE_REQUESTS)
        time.sleep(1)
        requests(url, queue_size * 2)
        time.sleep(1)
        rows.append((f"full queue ({queue_size * 2} requests, no collector)", state(envoy)))

    print(f"\n{args.variant}: Envoy 1.40, 1 worker; linear memory is the gauge "
          f"sidetrace.linear_memory_bytes, RSS is Envoy's")
    header = f"{'state':<46} {'linear memory':>14} {'spans queued':>13} {'dropped':>8} {'Envoy RSS MB':>13}"
    print(header)
    print("-" * len(header))
    for name, values in rows:
        memory = "" if values["memory"] is None else f"{values['memory'] / 2**20:.2f} MiB"
        queued = "" if values["queued"] is None else f"{values['queued']:,}"
        dropped = "" if values["dropped"] is None else f"{values['dropped']:,}"
        print(f"{name:<46} {memory:>14} {queued:>13} {dropped:>8} {values['rss'] / 2**20:>13.1f}")


if __name__ == "__main__":
    main()
