#!/usr/bin/env python3
"""What an attribute read and a CEL expression evaluation cost Envoy in CPU time, not
instructions: the check that `host_calls.py`'s counts hold where the targets are measured.

Instruction counts do not see cache misses, and Envoy's expression evaluation runs a lot of code
(the CEL interpreter, a protobuf arena, the foreign-function table) once per call. Each variant
is `benches/probe-filter` making many calls when the stream ends, so the calls' CPU time stands
out of the machine's noise: 32 attribute reads, 8 evaluations of a 4-attribute list (the same 32
attributes), 8 evaluations of `[1]`; CPU µs per request from `/proc` like `run.py`, interleaved
rounds, medians of what each adds over the same filter making no call.

    .venv/bin/python benches/envoy/host_call_times.py
    .venv/bin/python benches/envoy/host_call_times.py --rounds 10
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402
from run import OtlpReceiver  # noqa: E402

FACTS = "[response.code, request.protocol, xds.route_name, source.address]"
# (row, probe filter configuration, calls it makes per request, what one call is)
VARIANTS = [
    ("no call", "", 1, ""),
    ("reads", "done.property:32", 32, "attribute read (`request.protocol`)"),
    ("expression of 4", f"done.expr:8 | {FACTS}", 8, "expression listing 4 attributes"),
    ("expression [1]", "done.expr:8 | [1]", 8, "expression `[1]` (the fixed part)"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    run.build_probe_filter()
    cpu = {name: [] for name, *_ in VARIANTS}
    with OtlpReceiver(count_only=True) as receiver:
        for round_number in range(args.rounds):
            for name, calls, _, _ in VARIANTS:
                result = run.measure(name, "probe", None, "INBOUND", args.seconds, 16, receiver,
                                     {"calls": calls})
                cpu[name].append(result["cpu_us_per_req"])
                print(f"round {round_number + 1}/{args.rounds} {name:<16} {cpu[name][-1]:6.2f} µs/req",
                      file=sys.stderr, flush=True)
    print(f"\nEnvoy 1.40, 1 worker, direct_response, wrk -c16, {args.rounds} rounds x {args.seconds} s; "
          "CPU µs per request from /proc")
    print(f"{'host call':<44} {'per call µs':>12} {'rounds that beat the reads':>28}")
    base = cpu["no call"]
    per_call = {}
    for name, _, count, label in VARIANTS[1:]:
        added = [(c - b) / count for c, b in zip(cpu[name], base)]
        per_call[name] = added
        print(f"{label:<44} {statistics.median(added):>12.2f}", end="")
        if name == "expression of 4":
            # Per round: did 8 evaluations cost less than the 32 reads they replace?
            wins = sum(e * 8 < r * 32 for e, r in zip(added, per_call["reads"]))
            print(f" {wins:>20}/{args.rounds}", end="")
        print()


if __name__ == "__main__":
    main()
