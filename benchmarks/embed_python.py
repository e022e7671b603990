"""What an embedded kernel costs a Python host (issue 11), measured on this machine.

    .venv/bin/python benchmarks/embed_python.py [--tiny] [--json]

* ``poll``: ns per ``EmbeddedKernel.poll()`` with nothing waiting (safe points), over 10^6
  calls (a Python host: an attribute read).
* ``overhead``: a host loop whose step is ~0.5 ms of pure Python, alone and with an embedded
  kernel, an idle client attached (another process) and one ``poll`` per step; rounds
  interleaved, medians, the ratio (target: under 1.01).
* ``idle``: the kernel thread's CPU share and wake-ups per second while idle with a client
  attached (target: under 0.5 % of a core).
* ``start``: how long after a client sends a cell it starts on the host thread, the host
  polling once per step (target: one poll interval + 1 ms). Measured with CLOCK_MONOTONIC,
  shared by the two processes; twice: a host whose step is pure Python (it holds the GIL,
  which the kernel's thread gets after one switch interval) and one whose step releases it
  (hashing, as NumPy or a C extension would compute); and, as the floor, a kernel without
  safe points, whose cells start at once on its worker thread.

Connection files go to a temporary runtime dir. A shared machine makes every figure noisy:
read the medians, and compare within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

from kernelsdk.embed import EmbeddedKernel, PythonKernel, start_kernel

#: The client process: attaches, says "ready", runs CELLS cells (printing each send time),
#: then waits for its stdin to close.
CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from jupyter_client.blocking.client import BlockingKernelClient
    kc = BlockingKernelClient(connection_file=sys.argv[1])
    kc.load_connection_file()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    print("ready", flush=True)
    sends = []
    for _ in range(int(sys.argv[2])):
        sends.append(time.monotonic())
        kc.execute_interactive("mark()", timeout=60)
    print(json.dumps(sends), flush=True)
    sys.stdin.read()
    kc.stop_channels()
    """
)


def python_step(n: int = 20_000) -> None:
    total = 0
    for i in range(n):
        total += i


_DATA = bytes(800_000)


def gil_free_step() -> None:
    """~0.4 ms of work with the GIL released (hashlib releases it for large inputs)."""
    hashlib.sha256(_DATA).digest()


def host_loop(steps: int, poll: Callable[[], object] | None) -> float:
    """Seconds per step of a host loop, polling after each step if ``poll``."""
    start = time.perf_counter()
    for _ in range(steps):
        python_step()
        if poll is not None:
            poll()
    return (time.perf_counter() - start) / steps


class AttachedClient:
    """A jupyter_client in another process, attached to ``handle``."""

    def __init__(self, handle: EmbeddedKernel, cells: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(handle.connection_file), str(cells)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the client did not attach")

    def send_times(self) -> list[float]:
        assert self.proc.stdout is not None
        times: list[float] = json.loads(self.proc.stdout.readline())
        return times

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)


def measure_poll(calls: int) -> float:
    with start_kernel(PythonKernel(), "bench-poll", safe_points=True) as handle:
        poll = handle.poll
        start = time.perf_counter()
        for _ in range(calls):
            poll()
        return (time.perf_counter() - start) / calls * 1e9


def measure_overhead(rounds: int, steps: int) -> dict[str, float]:
    alone: list[float] = []
    embedded: list[float] = []
    for _ in range(rounds):
        alone.append(host_loop(steps, None))
        with start_kernel(PythonKernel(), "bench-overhead", safe_points=True) as handle:
            client = AttachedClient(handle, 0)
            client.send_times()
            embedded.append(host_loop(steps, handle.poll))
            client.close()
    a, e = statistics.median(alone), statistics.median(embedded)
    return {"step_alone_ms": a * 1e3, "step_embedded_ms": e * 1e3, "ratio": e / a}


def _wakeups(native_id: int) -> int:
    with open(f"/proc/self/task/{native_id}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    return 0


def measure_idle(seconds: float) -> dict[str, float]:
    with start_kernel(PythonKernel(), "bench-idle", safe_points=True) as handle:
        client = AttachedClient(handle, 0)
        client.send_times()
        thread = handle._thread
        assert thread.ident is not None and thread.native_id is not None
        clock = time.pthread_getcpuclockid(thread.ident)
        cpu0, wall0, woke0 = time.clock_gettime(clock), time.monotonic(), _wakeups(thread.native_id)
        handle.poll(seconds)  # the host waits in poll: nothing comes
        cpu1, wall1, woke1 = time.clock_gettime(clock), time.monotonic(), _wakeups(thread.native_id)
        client.close()
    wall = wall1 - wall0
    return {
        "seconds": wall,
        "cpu_percent": (cpu1 - cpu0) / wall * 100,
        "wakeups_per_s": (woke1 - woke0) / wall,
    }


def measure_start(
    cells: int, step: Callable[[], None] = python_step, safe_points: bool = True
) -> dict[str, float]:
    started: list[float] = []
    kernel = PythonKernel({"mark": lambda: started.append(time.monotonic())})
    steps: list[float] = []
    with start_kernel(kernel, "bench-start", safe_points=safe_points) as handle:
        client = AttachedClient(handle, cells)
        done = threading.Event()
        sends: list[float] = []

        def read_sends() -> None:
            sends.extend(client.send_times())
            done.set()

        threading.Thread(target=read_sends, daemon=True).start()
        while not done.is_set():
            begin = time.monotonic()
            step()
            handle.poll()
            steps.append(time.monotonic() - begin)
        client.close()
    # The first cell waits for the client's IOPub subscription: left out.
    delays = sorted((s - t) * 1e3 for s, t in zip(started[1:], sends[1:], strict=True))
    return {
        "poll_interval_ms": statistics.median(steps) * 1e3,
        "median_ms": statistics.median(delays),
        "p90_ms": delays[int(len(delays) * 0.9)],
        "max_ms": delays[-1],
        "cells": len(delays),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args(argv)
    # The kernels' connection files: not in the user's runtime dir.
    os.environ["JUPYTER_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="ksdk-bench-embed-")
    tiny = args.tiny
    results: dict[str, Any] = {
        "poll_ns": measure_poll(10_000 if tiny else 1_000_000),
        "overhead": measure_overhead(1 if tiny else 8, 20 if tiny else 400),
        "idle": measure_idle(0.2 if tiny else 10.0),
        "start": measure_start(3 if tiny else 40),
        "start_gil_free": measure_start(3 if tiny else 40, gil_free_step),
        "start_floor": measure_start(3 if tiny else 40, gil_free_step, safe_points=False),
    }
    if args.json:
        print(json.dumps(results))
        return results
    o, i = results["overhead"], results["idle"]
    print(f"poll() with nothing waiting: {results['poll_ns']:.0f} ns per call")
    print(
        f"host step {o['step_alone_ms']:.3f} ms alone, {o['step_embedded_ms']:.3f} ms with "
        f"the kernel, an idle client and a poll per step: ratio {o['ratio']:.4f}"
    )
    print(
        f"kernel thread idle, client attached: {i['cpu_percent']:.4f} % of a core, "
        f"{i['wakeups_per_s']:.1f} wake-ups/s over {i['seconds']:.1f} s"
    )
    for label, s in (
        ("Python step, polling every", results["start"]),
        ("GIL-free step, polling every", results["start_gil_free"]),
        ("no safe points (the floor), a GIL-free step of", results["start_floor"]),
    ):
        print(
            f"cell start after the client's send, {label} {s['poll_interval_ms']:.2f} ms: "
            f"median {s['median_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms, max "
            f"{s['max_ms']:.2f} ms ({s['cells']} cells)"
        )
    return results


if __name__ == "__main__":
    main()
