#!/usr/bin/env python3
"""Runs the criterion propagation benchmarks and prints sidetrace vs opentelemetry-rust per format."""
import re
import subprocess
import sys

out = subprocess.run(["cargo", "bench", "-p", "sidetrace-benches", "--bench", "propagation"],
                     capture_output=True, text=True, check=True).stdout
times = {}
for name, value, unit in re.findall(r"^(\S+/\S+)\s*\n?\s*time:\s+\[\S+ \S+ ([\d.]+) (ns|µs|us|ms)", out, re.M):
    times[name] = float(value) * {"ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6}[unit]
formats = sorted({n.split("/")[0] for n in times}, key=list(dict.fromkeys(n.split("/")[0] for n in times)).index)
print(f"{'extract+inject':<26} {'sidetrace ns':>13} {'otel-rust ns':>13} {'speedup':>8}")
for fmt in formats:
    ours, theirs = times.get(f"{fmt}/sidetrace"), times.get(f"{fmt}/opentelemetry-rust")
    ratio = f"{theirs / ours:.1f}x" if ours and theirs else "-"
    print(f"{fmt:<26} {ours or float('nan'):>13.1f} {theirs if theirs else float('nan'):>13.1f} {ratio:>8}")
if not times:
    print(out[-2000:], file=sys.stderr)
    sys.exit(1)
