"""Time Lua cells in two source trees, alternately, in one run (same machine, same moment).

Each round runs each tree's Lua kernel in memory (``kernelsdk.testing.open_test_kernel``, so
only the kernel's own path is measured: the protocol core, the handlers, the NativeRunner, the
Lua state) in a fresh process with ``PYTHONPATH=<tree>:<tree>/kernels/lua``, times ``--cells``
executions of ``--code`` after one warm-up cell, and prints the median time per cell of each
tree, their ratio (second / first) over all cells and the median of the per-round ratios::

    $ git worktree add /tmp/base <commit>
    $ .venv/bin/python benchmarks/lua_cell_ab.py /tmp/base . --rounds 8 --cells 5
    $ .venv/bin/python benchmarks/lua_cell_ab.py /tmp/base . --code "x = 1" --cells 200

The default code is a CPU loop (about 0.13 s): the Lua hot path while a cell runs alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

LOOP = "local s = 0 for i = 1, 2e7 do s = s + i % 7 end return s"

_CHILD = """
import json, sys, time, trio
import kernelsdk
from kernelsdk_lua import LuaKernel
from kernelsdk.testing import open_test_kernel

async def main(code, cells):
    async with open_test_kernel(LuaKernel()) as client:
        await client.execute(code)
        times = []
        for _ in range(cells):
            start = time.perf_counter()
            result = await client.execute(code)
            times.append(time.perf_counter() - start)
            assert result.reply.content["status"] == "ok", result.reply.content
    print(json.dumps({"kernelsdk": kernelsdk.__file__, "times": times}))

trio.run(main, sys.argv[1], int(sys.argv[2]))
"""


def run_tree(tree: Path, code: str, cells: int) -> list[float]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'kernels' / 'lua'}",
        "PYTHONSAFEPATH": "1",  # not the current directory first: the tree's kernelsdk
    }
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, code, str(cells)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if not str(result["kernelsdk"]).startswith(str(tree)):
        raise SystemExit(f"{tree}: imported kernelsdk from {result['kernelsdk']}")
    return [float(t) for t in result["times"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--code", default=LOOP)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--cells", type=int, default=5)
    args = parser.parse_args()
    base_tree, new_tree = args.base.resolve(), args.new.resolve()
    base: list[float] = []
    new: list[float] = []
    paired: list[float] = []
    for _ in range(args.rounds):
        b = run_tree(base_tree, args.code, args.cells)
        n = run_tree(new_tree, args.code, args.cells)
        base += b
        new += n
        paired.append(statistics.median(n) / statistics.median(b))
    summary = {
        "base_median_s": statistics.median(base),
        "new_median_s": statistics.median(new),
        "ratio": statistics.median(new) / statistics.median(base),
        "paired_ratio": statistics.median(paired),
        "rounds": [round(r, 3) for r in paired],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
