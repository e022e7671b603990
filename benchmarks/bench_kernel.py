"""ksdk-bench: a BENCHMARK-ONLY kernel built on kernelsdk (not shipped, not an example).

The echo kernel cannot sleep, spin the CPU or print a given amount of output, so the harness
measures those kernelsdk behaviours with this kernel. Cells:

* ``sleep S``: ``time.sleep(S)`` in a worker thread (``ctx.run_blocking``, the SDK's way to run
  blocking code);
* ``spin S``: a pure-Python busy loop for S seconds in a worker thread (holds the GIL except at
  the interpreter's switch interval);
* ``spin-inline S``: the same busy loop on the Trio thread itself (a kernel that ignores the
  SDK's advice: nothing but the heartbeat thread can answer meanwhile);
* ``out COUNT SIZE``: COUNT stdout chunks of SIZE bytes (``'x' * (SIZE - 1) + '\\n'``);
* anything else: echoed like the echo kernel (stdout and result).

Launched as ``python -m kernelsdk run bench_kernel:BenchKernel -f FILE`` with this directory on
``PYTHONPATH``.
"""

from __future__ import annotations

import time

from kernelsdk import BaseKernel, ExecuteContext


def _spin(seconds: float) -> int:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


class BenchKernel(BaseKernel):
    implementation = "ksdk-bench"
    implementation_version = "0.1.0"
    language_info = {"name": "ksdk-bench", "mimetype": "text/plain", "file_extension": ".txt"}
    banner = "kernelsdk benchmark kernel (benchmarks only)"

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str | None:
        cmd, _, arg = code.partition(" ")
        if cmd == "sleep":
            await ctx.run_blocking(time.sleep, float(arg))
            return None
        if cmd == "spin":
            await ctx.run_blocking(_spin, float(arg))
            return None
        if cmd == "spin-inline":
            _spin(float(arg))
            return None
        if cmd == "out":
            count, size = (int(x) for x in arg.split())
            chunk = "x" * (size - 1) + "\n"
            for _ in range(count):
                ctx.stdout(chunk)
            return None
        ctx.print(code)
        return code
