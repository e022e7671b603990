"""What the Lua kernel's debugger costs a CPU-bound cell (issue 14), measured in one process.

Five Lua states run the same cell (a loop and a recursive function: Lua calls and lines),
round after round, interleaved so that the machine's load falls on all alike:

* ``before``: the driver alone, as the kernel was without a debugger;
* ``off``: ``debugger.lua`` loaded, the debugger off (every kernel, until a frontend starts it);
* ``started``: started from a frontend, no breakpoint set;
* ``bp-elsewhere``: a breakpoint in another file (call and return events on, line events off);
* ``bp-in-cell``: a breakpoint in the cell on a line never reached (line events inside the
  cell's functions: the worst case short of stopping).

Prints the median seconds per run of each and its ratio to ``before``; ``--json`` writes them.
Run: ``.venv/bin/python benchmarks/lua_debugger.py [--rounds N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

from kernelsdk_lua._debugger import LuaDebugger
from kernelsdk_lua._ffi import load_library
from kernelsdk_lua._literals import lua_table_literal
from kernelsdk_lua._state import LuaState

CELL = """
local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
local s = 0
for i = 1, 2000000 do
  s = s + i % 7
end
if s < 0 then
  print("never")
end
return fib(24) + s
"""
NEVER_LINE = 8  # inside the cell, never reached


def no_host(op: str, text: bytes, number: int) -> int:
    return 0


def make_state(variant: str) -> LuaState:
    state = LuaState(load_library("5.4"))
    if variant == "before":
        return state
    LuaDebugger(SimpleNamespace(lua=state)).load()
    if variant == "off":
        return state
    breakpoints: dict[str, Any] = {}
    if variant == "bp-elsewhere":
        breakpoints = {"/elsewhere/module.lua": [{"line": 1}]}
    elif variant == "bp-in-cell":
        breakpoints = {"/cells/bench.lua": [{"line": NEVER_LINE}]}
    config = {
        "active": True,
        "breakpoints": breakpoints,
        "paths": {"=bench": "/cells/bench.lua"},
    }
    state.call(f"K.debugger.configure({lua_table_literal(config)})")
    return state


def run_once(state: LuaState) -> float:
    start = time.perf_counter()
    outcome = state.execute(CELL, "bench", no_host)
    elapsed = time.perf_counter() - start
    if "value" not in outcome:
        raise RuntimeError(f"the cell failed: {outcome}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    variants = ["before", "off", "started", "bp-elsewhere", "bp-in-cell"]
    states = {v: make_state(v) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for state in states.values():
        run_once(state)  # warm up
    for _ in range(args.rounds):
        for variant in variants:
            times[variant].append(run_once(states[variant]))
    base = statistics.median(times["before"])
    results = {
        v: {"median_s": statistics.median(t), "ratio": statistics.median(t) / base}
        for v, t in times.items()
    }
    for v, r in results.items():
        print(f"{v:>13}  {r['median_s'] * 1000:8.1f} ms  x{r['ratio']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": args.rounds, "results": results}, f, indent=1)
    for state in states.values():
        state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
