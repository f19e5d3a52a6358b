#!/usr/bin/env python3
"""Two builds of the module on one `run.py` row, alternated round by round: which costs Envoy
less CPU time, and by how much this machine can tell.

A change worth a few hundred instructions a request moves a row's CPU time by less than the
machine's noise between rounds (±0.4 µs on two shared cores), so two separate `run.py` runs
cannot compare builds. Here each round runs no tracing, then both modules (the order swapped
every round), so both see the same moment of the machine; what is compared is the difference
of their added CPU time within each round. Printed: each module's median added µs and RSS above
no tracing and its median p99 latency, and for two modules the median per-round difference
(second minus first) of added CPU and of p99, each with a 90 % interval (the median over rounds
drawn with replacement, 5th to 95th percentile of 2,000 draws). An interval spanning zero means
no difference this machine can show. Figures, not assertions.

    .venv/bin/python benches/envoy/ab.py --rounds 20 before.wasm after.wasm
    .venv/bin/python benches/envoy/ab.py --sampled-caller --row "sidetrace out 100% dir" before.wasm after.wasm
"""
import argparse
import os
import random
import statistics
import sys

import run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="+", help="paths of the builds to compare (two for a difference)")
    parser.add_argument("--row", default="sidetrace in 100% dir", help="a run.py variant")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--caller-context", action="store_true")
    parser.add_argument("--sampled-caller", action="store_true")
    args = parser.parse_args()
    variants = {variant[0]: variant for variant in run.VARIANTS}
    if args.row not in variants:
        parser.error(f"no run.py variant named {args.row!r}")
    headers, described = run.caller_headers(args.caller_context, args.sampled_caller)
    pinned = run.cores()
    if pinned:
        os.sched_setaffinity(0, pinned[1])
    _, kind, percentage, direction, extra = variants[args.row]
    arms = [(os.path.basename(module), module) for module in args.modules]
    names = [name for name, _ in arms]
    cpu = {name: [] for name in ["none"] + names}
    rss = {name: [] for name in ["none"] + names}
    p99 = {name: [] for name in ["none"] + names}
    print(f"{args.row}, {args.rounds} rounds x {args.seconds} s, {described}", flush=True)
    with run.OtlpReceiver(count_only=True) as receiver:
        for round_index in range(args.rounds):
            order = list(arms)
            if round_index % 2:
                order.reverse()
            for name, module in [("none", None)] + order:
                if module is None:
                    _, none_kind, none_percentage, none_direction, _ = variants["none"]
                    out = run.measure(name, none_kind, none_percentage, none_direction, args.seconds,
                                      args.connections, receiver, None, headers, pinned)
                else:
                    os.environ["SIDETRACE_WASM"] = os.path.abspath(module)
                    out = run.measure(name, kind, percentage, direction, args.seconds, args.connections,
                                      receiver, extra, headers, pinned)
                cpu[name].append(out["cpu_us_per_req"])
                rss[name].append(out["rss_mb"])
                p99[name].append(out["p99_ms"])
            shown = "  ".join(f"{name} {values[-1]:.2f}" for name, values in cpu.items())
            print(f"round {round_index + 1}/{args.rounds}: {shown} µs/req", file=sys.stderr, flush=True)
    added = {name: [cpu[name][i] - cpu["none"][i] for i in range(args.rounds)] for name in names}
    for name in names:
        print(f"{name}: median added {statistics.median(added[name]):.2f} µs/req, "
              f"RSS above none {statistics.median(rss[name]) - statistics.median(rss['none']):.1f} MB, "
              f"p99 {statistics.median(p99[name]):.3f} ms (none {statistics.median(p99['none']):.3f})")
    if len(names) == 2:
        first, second = names
        for what, values, unit, digits in (("added CPU", added, "µs/req", 2), ("p99", p99, "ms", 3)):
            differences = [values[second][i] - values[first][i] for i in range(args.rounds)]
            low, high = interval(differences)
            print(f"{second} - {first} per round, {what}: median {statistics.median(differences):+.{digits}f} "
                  f"{unit}, 90% interval {low:+.{digits}f} to {high:+.{digits}f}")


def interval(differences):
    """5th and 95th percentiles of the median of `differences` drawn with replacement."""
    draws = random.Random(1)
    medians = sorted(statistics.median(draws.choice(differences) for _ in differences) for _ in range(2000))
    return medians[100], medians[1900]


if __name__ == "__main__":
    main()
