#!/usr/bin/env python3
"""Where one Envoy worker's CPU goes under benchmark variants, by `perf record`.

Runs each variant the way `run.py` does (direct_response route, wrk on loopback, a count-only
receiver), samples the Envoy process with perf, and splits its CPU per request by where it ran:
the wasm code V8 compiled from the module ([JIT]), the Envoy binary (HTTP, the gRPC export, V8's
runtime and the host side of every ABI call; the shipped binary is stripped, so no finer), libc,
and the kernel. It answers "would fewer wasm instructions help?". Figures, not assertions.

    .venv/bin/python benches/envoy/profile.py
    .venv/bin/python benches/envoy/profile.py --variant "sidetrace in 1%" --variant "native 1%"

Envoy and wrk are pinned to cores as `run.py` pins them (`--no-pin` leaves them to the
scheduler).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402
from run import Envoy, OtlpReceiver, envoy_config, free_port  # noqa: E402

DEFAULT_VARIANTS = ["none", "wasm floor (no-op)", "sidetrace in 1%", "sidetrace in 100%", "native 100%"]


def where(dso):
    if dso.startswith("[JIT]"):
        return "wasm code (JIT)"
    if dso.startswith("[kernel"):
        return "kernel"
    if dso == "envoy":
        return "envoy binary"
    if dso.startswith("libc"):
        return "libc"
    return "other"


def profile(variant, seconds, pinned):
    name, kind, percentage, direction, extra = variant
    port, admin = free_port(), free_port()
    wrk = ["wrk", "-t1"]
    with OtlpReceiver(count_only=True) as receiver:
        config = envoy_config(kind, percentage, direction, port, admin, receiver.port, extra)
        with Envoy(config, f"profile-{kind}", log_level="warning") as envoy:
            url = f"http://127.0.0.1:{port}/bench/item"
            if pinned:
                envoy_cores, load_cores = pinned
                run.pin(envoy.process.pid, envoy_cores)
                wrk = ["taskset", "-c", ",".join(map(str, sorted(load_cores)))] + wrk
            # Long enough for V8 to move the module's hot functions to its optimizing tier.
            subprocess.run(wrk + ["-c4", "-d2s", url], capture_output=True)
            data = os.path.join(tempfile.mkdtemp(prefix="sidetrace-perf-"), "perf.data")
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-o", data, "-p", str(envoy.process.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = envoy.cpu_seconds()
            out = subprocess.run(wrk + ["-c16", f"-d{seconds}s", url],
                                 capture_output=True, text=True, check=True).stdout
            cpu = envoy.cpu_seconds() - before
            perf.send_signal(2)
            perf.wait(timeout=60)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso", "--stdio",
                             "--percent-limit", "0"], capture_output=True, text=True).stdout
    shares = {}
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S.*?)\s*$", line)
        if match:
            bucket = where(match.group(2))
            shares[bucket] = shares.get(bucket, 0.0) + float(match.group(1)) / 100
    return cpu / requests * 1e6, shares


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", help="a row name of run.py's table (repeatable)")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--no-pin", action="store_true", help="leave Envoy and wrk where the scheduler puts them")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf is not installed (Debian: apt-get install linux-perf)")
    names = args.variant or DEFAULT_VARIANTS
    run.build_probe_filter()
    variants = {v[0]: v for v in run.VARIANTS}
    unknown = [n for n in names if n not in variants]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; one of: {', '.join(variants)}")
    pinned = None if args.no_pin else run.cores()
    if pinned:
        # The receiver's threads, started per variant, inherit this: they stay off Envoy's core.
        os.sched_setaffinity(0, pinned[1])
    columns = ["wasm code (JIT)", "envoy binary", "libc", "kernel", "other"]
    print(f"Envoy CPU µs per request by where it ran (wrk -c16, {args.seconds} s, perf at 999 Hz, "
          + (f"Envoy pinned to core {sorted(pinned[0])})" if pinned else "not pinned)"))
    print(f"{'variant':<22} {'total':>7} " + " ".join(f"{c:>16}" for c in columns))
    for name in names:
        total, shares = profile(variants[name], args.seconds, pinned)
        cells = " ".join(f"{total * shares.get(c, 0.0):9.2f} ({shares.get(c, 0.0) * 100:3.0f}%)" for c in columns)
        print(f"{name:<22} {total:7.2f} {cells}", flush=True)


if __name__ == "__main__":
    main()
