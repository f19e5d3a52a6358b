#!/usr/bin/env python3
"""How many `memory.copy` instructions the module executes per request, callback by callback.

V8 runs `memory.copy` as a call out of the compiled code into its runtime (~40 Envoy
instructions each, measured), where the `cost` example counts it as one instruction like any
other. This builds two copies of the module (`target/sidetrace.wasm`, or SIDETRACE_WASM) in which
every `memory.copy` first spins a loop of a known length, runs the `cost` example on each, and
divides the difference by the difference in loop length: exact counts, whatever else runs.

    .venv/bin/python benches/wasm_copies.py

Needs binaryen's `wasm-dis` and `wasm-as` (Debian package `binaryen`).
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from harness import paths  # noqa: E402

FEATURES = ["--enable-bulk-memory", "--enable-sign-ext", "--enable-nontrapping-float-to-int",
            "--enable-mutable-globals"]
# Turns of the spinning loop in each build.
TURNS = (1000, 2000)
# Each turn: `local.get`, `i32.const`, `i32.add`, `local.set`, `local.get`, `i32.const`,
# `i32.lt_u`, `br_if`.
INSTRUCTIONS_PER_TURN = 8
SECTION = "wasm instructions by callback"


def instrumented(text, turns):
    """The module's text with each `memory.copy` replaced by a call that spins, then copies."""
    spin = f"""
 (func $__spin_then_copy (param $to i32) (param $from i32) (param $len i32)
  (local $turn i32)
  (loop $spin
   (local.set $turn (i32.add (local.get $turn) (i32.const 1)))
   (br_if $spin (i32.lt_u (local.get $turn) (i32.const {turns})))
  )
  (memory.copy (local.get $to) (local.get $from) (local.get $len))
 )
"""
    text = text.replace("(memory.copy", "(call $__spin_then_copy")
    end = text.rstrip().rfind(")")
    return text[:end] + spin + text[end:]


def cost_table(wasm):
    """{scenario: [wasm instructions per callback...]} from the `cost` example's second table."""
    out = subprocess.run(["cargo", "run", "-q", "--release", "-p", "sidetrace-mock-host", "--example", "cost"],
                         cwd=paths.REPO, env=dict(os.environ, SIDETRACE_WASM=wasm),
                         capture_output=True, text=True, check=True).stdout
    rows, inside = {}, False
    for line in out.splitlines():
        if line.startswith(SECTION):
            inside = True
            continue
        if inside and not line.strip():
            break
        if inside:
            name = re.split(r"\s{2,}", line.strip())[0]
            rows[name] = [float(x) for x in line[len(name):].split()]
    return rows


def main():
    module = paths.wasm_path()
    with tempfile.TemporaryDirectory() as scratch:
        text = subprocess.run(["wasm-dis", module], capture_output=True, text=True, check=True).stdout
        tables = []
        for turns in TURNS:
            wat = os.path.join(scratch, f"spin{turns}.wat")
            wasm = os.path.join(scratch, f"spin{turns}.wasm")
            with open(wat, "w") as f:
                f.write(instrumented(text, turns))
            subprocess.run(["wasm-as", *FEATURES, wat, "-o", wasm], check=True)
            tables.append(cost_table(wasm))
    short, long = tables
    extra = (TURNS[1] - TURNS[0]) * INSTRUCTIONS_PER_TURN
    print(f"memory.copy executed per request, {module} ({os.path.getsize(module)} bytes)")
    print(f"{'':45} {'create':>7} {'request':>8} {'response':>9} {'end':>6}")
    for name, values in short.items():
        # The loop's turns cost the same instructions each, so the difference between the builds
        # over the extra instructions a copy spins in the second is the number of copies.
        counts = [(b - a) / extra for a, b in zip(values, long[name])]
        if len(counts) == 2:  # the batching row: host calls, then instructions, per span
            print(f"{name:45} {'':>7} {'':>8} {'':>9} {counts[1]:>6.2f}  (per span)")
            continue
        print(f"{name:45} " + " ".join(f"{c:>{w}.2f}" for c, w in zip(counts, (7, 8, 9, 6))))


if __name__ == "__main__":
    main()
