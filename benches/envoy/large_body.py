#!/usr/bin/env python3
"""Envoy's instructions per request for requests carrying a large body (2 MiB by default),
counted under valgrind's callgrind as `instructions.py` counts them: what a build of the module
costs on the body path, where Envoy calls the module once per body chunk if it exports
`proxy_on_request_body`.

Each module given runs the same `run.py` row ("sidetrace in 100% all" unless `--variant` says
otherwise), and no tracing runs as the reference. The direct_response route would answer on the
request's headers and reset the rest of an HTTP/1.1 request, so a buffer filter is added in
front of the router, in every row: Envoy reads the whole body, through the module, before it
answers. The requests are HTTP/1.1 POSTs from h2load (`-d`, two clients; with `--body-bytes 0`,
GETs without a body). After a warm-up (1000 requests with a 2-byte body, then 10 with the full
body), counting is switched on for `--requests` requests plus the exports and ticks that follow.
Printed per row: instructions per request, what it adds over no tracing, what it adds over the
first module given, the bytes Envoy received per request in the window
(`downstream_cx_rx_bytes_total`: the body and the headers), and the module's request and
response body callbacks per request, read after the window from Envoy's `wasm` trace log over
`--sample` more requests (how Envoy splits a body into chunks follows its reads, so that figure
is the window's only as far as the pace under valgrind is the same). Figures, not assertions.

    .venv/bin/python benches/envoy/large_body.py trimmed.wasm untrimmed.wasm
    .venv/bin/python benches/envoy/large_body.py --body-bytes 2 trimmed.wasm untrimmed.wasm
    .venv/bin/python benches/envoy/large_body.py --body-bytes 0 trimmed.wasm untrimmed.wasm   # GETs, no body
    .venv/bin/python benches/envoy/large_body.py --requests 100 --variant "sidetrace in 100% dir"
    .venv/bin/python benches/envoy/large_body.py --before before.wasm

Without module paths the module is `SIDETRACE_WASM`'s, or `target/sidetrace.wasm`.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import instructions  # noqa: E402
import run  # noqa: E402
from run import OtlpReceiver, envoy_config, free_port  # noqa: E402

WARM_UP_SMALL = 1000
WARM_UP_FULL = 10
# The buffer filter answers 413 to a body over its limit: room to spare above the body sent.
HEADROOM = 64 * 1024


def buffered(config_text, max_request_bytes):
    """`config_text` with a buffer filter just before the router: the router answers once the
    whole request is in, and every filter before it sees each chunk of the body."""
    bootstrap = yaml.safe_load(config_text)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"].insert(len(hcm["http_filters"]) - 1, {
        "name": "envoy.filters.http.buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                         "max_request_bytes": max_request_bytes}})
    return yaml.safe_dump(bootstrap)


def admin_counters(admin):
    out = subprocess.run(["curl", "-s", "--max-time", "30", f"http://127.0.0.1:{admin}/stats?filter=^http\\.bench\\."],
                         capture_output=True, text=True, check=True).stdout
    values = {}
    for line in out.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            values[name] = int(value)
    return values


def count(variant, requests, receiver, workdir, body, small_body, sample):
    """Instructions per request over `requests` POSTs of the file `body` (GETs if None), the
    bytes Envoy received per request meanwhile, and the module's request and response body
    callbacks per request over `sample` more."""
    name, kind, percentage, direction, extra = variant
    body_bytes = os.path.getsize(body) if body else 0
    # h2load sends a POST only with a body; without one, a GET.
    data = ["-d", body] if body else []
    port, admin = free_port(), free_port()
    config = buffered(envoy_config(kind, percentage, direction, port, admin, receiver.port, extra),
                      body_bytes + HEADROOM)
    process, profile, log_path = instructions.start_under_callgrind(config, workdir)
    sampled = sample and kind in ("sidetrace", "sidetrace-before")
    try:
        url = f"http://127.0.0.1:{port}/bench/item"
        instructions.wait_until_serving(url, process)
        h2load = ["h2load", "--h1", "-c", "2"]
        # Enough calls for V8 to move the module's hot functions to its optimizing tier, the
        # body callback's among them; then a few full bodies, so that the window does not pay
        # for the buffers' first growth.
        subprocess.run(h2load + ["-n", str(WARM_UP_SMALL), "-d", small_body, url], capture_output=True, check=True)
        subprocess.run(h2load + ["-n", str(WARM_UP_FULL)] + data + [url], capture_output=True, check=True)
        time.sleep(2)
        before = admin_counters(admin)
        instructions.set_counting(process, True)
        started = time.time()
        out = subprocess.run(h2load + ["-n", str(requests)] + data + [url], capture_output=True, text=True,
                             check=True).stdout
        if f"{requests} succeeded" not in out:
            raise SystemExit(f"{name}: not every request succeeded:\n{out}")
        # Batches leave on the tick; let the last one go and be answered inside the window.
        time.sleep(3)
        instructions.set_counting(process, False)
        window = time.time() - started
        after = admin_counters(admin)
        if sampled:
            # Envoy's wasm trace log names every call into the module: outside the window, so
            # the logging is not counted.
            subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{admin}/logging?wasm=trace"],
                           capture_output=True, check=True)
            subprocess.run(h2load + ["-n", str(sample)] + data + [url], capture_output=True, check=True)
            subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{admin}/logging?wasm=warning"],
                           capture_output=True, check=True)
            time.sleep(1)
    finally:
        process.terminate()
        process.wait()
    callbacks = None
    if sampled:
        with open(log_path, errors="replace") as log:
            text = log.read()
        callbacks = {side: len(re.findall(rf"\[host->vm\] proxy_on_{side}_body\(", text)) / sample
                     for side in ("request", "response")}
    total = sum(instructions.file_totals(path)["Ir"] for path in glob.glob(profile + "*"))
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    print(f"{name:<44} window {window:.1f} s", file=sys.stderr, flush=True)
    return {"ir": total / requests,
            "rx_bytes": delta.get("http.bench.downstream_cx_rx_bytes_total", 0) / requests,
            "early_answers": delta.get("http.bench.downstream_rq_response_before_rq_complete", 0),
            "callbacks": callbacks}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*",
                        help="builds of the module, each run on every sidetrace row (default: SIDETRACE_WASM's, "
                             "or target/sidetrace.wasm)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--body-bytes", type=int, default=2 * 1024 * 1024)
    parser.add_argument("--variant", action="append",
                        help="a row name of run.py (repeatable; default \"sidetrace in 100%% all\"); \"none\" always runs")
    parser.add_argument("--before", metavar="WASM", help="another build of the module, run first, as 'before'")
    parser.add_argument("--sample", type=int, default=10,
                        help="requests after the window over which the body callbacks are read (0: none)")
    args = parser.parse_args()
    instructions.require_tools()
    wanted = args.variant or ["sidetrace in 100% all"]
    rows = [run.VARIANTS[0]] + [v for v in run.VARIANTS if v[0] in wanted and v[0] != "none"]
    if len(rows) != len(set(wanted) | {"none"}):
        parser.error(f"not a run.py row: {sorted(set(wanted) - {v[0] for v in rows})}")
    if any(kind == "probe" for _, kind, *_ in rows):
        run.build_probe_filter()
    modules = [os.path.abspath(module) for module in args.modules] or [os.path.abspath(run.paths.wasm_path())]
    if args.before:
        modules.insert(0, os.path.abspath(args.before))
    labels = [os.path.basename(module) for module in modules]
    if args.before:
        labels[0] = "before"
    # A module's own rows, and the rows no module changes once.
    plan = []
    for row in rows:
        if row[1] == "sidetrace":
            plan += [((f"{row[0]} [{label}]", *row[1:]), module) for label, module in zip(labels, modules)]
        else:
            plan.append((row, None))
    results = {}
    with OtlpReceiver(count_only=True) as receiver, tempfile.TemporaryDirectory() as workdir:
        body = os.path.join(workdir, "body") if args.body_bytes else None
        if body:
            with open(body, "wb") as out:
                out.write(b"x" * args.body_bytes)
        small_body = os.path.join(workdir, "small-body")
        with open(small_body, "wb") as out:
            out.write(b"xx")
        for variant, module in plan:
            if module:
                os.environ["SIDETRACE_WASM"] = module
            results[variant[0]] = count(variant, args.requests, receiver, workdir, body, small_body, args.sample)
            print(f"{variant[0]:<44} {results[variant[0]]['ir']:>14,.0f} instructions/request", file=sys.stderr,
                  flush=True)
    base = results["none"]["ir"]
    print(f"\nEnvoy 1.40 under callgrind, 1 worker, direct_response behind a buffer filter, {args.requests} HTTP/1.1 "
          + (f"POSTs of {args.body_bytes:,} bytes (h2load -c2 -d)" if args.body_bytes else "GETs (h2load -c2)")
          + f" after {WARM_UP_SMALL} + {WARM_UP_FULL} to warm up; "
          f"all threads, exports and ticks included")
    header = (f"{'variant':<44} {'instr/request':>14} {'added':>12} {'vs first module':>16} {'rx bytes/req':>13} "
              f"{'request body calls':>19} {'response body calls':>20}")
    print(header)
    print("-" * len(header))
    for variant, module in plan:
        name = variant[0]
        result = results[name]
        first = ""
        if module and module != modules[0]:
            reference = f"{name.rsplit(' [', 1)[0]} [{labels[0]}]"
            first = f"{result['ir'] - results[reference]['ir']:+,.0f}"
        calls = result["callbacks"] or {}
        request_calls, response_calls = (f"{calls[key]:.1f}" if key in calls else "" for key in ("request", "response"))
        print(f"{name:<44} {result['ir']:>14,.0f} {result['ir'] - base:>12,.0f} {first:>16} "
              f"{result['rx_bytes']:>13,.0f} {request_calls:>19} {response_calls:>20}")
        if result["early_answers"]:
            print(f"  {result['early_answers']} requests answered before their body was in")
    print()
    for label, module in zip(labels, modules):
        print(f"{label}: {module}, {os.path.getsize(module)} bytes")


if __name__ == "__main__":
    main()
