"""What a kernel costs the in-situ simulation (examples/insitu/heat.c, issue 11).

``python benchmarks/insitu.py [--ranks 2] [--nx 256] [--reps 3] [--cells 40] [--idle 10]``

Builds heat into a temporary directory (examples/insitu/build) and measures, on ``--ranks``
ranks of the mpich wheel's mpiexec:

- step time, compute-bound (no sleep between steps), from heat's own ``--report`` lines
  (exchange + update + poll, the slowest rank's mean over each block of steps): without a kernel
  (``--no-kernel``), with a kernel and no client, with a client attached and idle; medians over
  ``--reps`` runs interleaved, and the ratios. The collective poll's own cost per step is the
  ``poll`` figure of the kernel runs;
- the kernel threads' CPU while a client is attached and idle (every thread of each rank but
  its main one, from /proc/<pid>/task/*/stat over ``--idle`` seconds, in % of one core), with
  10 ms steps;
- the time from sending an ``execute_request`` to the cell's start on rank 0 (the cell reads
  the clock), ``--cells`` cells sent at random moments, against the poll interval measured by
  two cells ``--idle`` seconds apart.

Prints a table and one JSON line last. Every simulation it starts is ended at the end (by a
cell, else by a signal), also on an error.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")


class Heat:
    def __init__(self, binary: Path, ranks: int, *args: str, kernel: bool = True) -> None:
        self.binary = binary
        self.name = f"bench-{os.getpid()}-{random.randrange(10**6)}"
        argv = [str(BIN / "mpiexec"), "-n", str(ranks), str(binary), "--name", self.name, *args]
        if not kernel:
            argv.append("--no-kernel")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self.proc.stdout is not None
        self.out = self.proc.stdout
        self.connection_file: str | None = None
        if kernel:
            self.out.readline()  # "heat: N ranks ..."
            self.connection_file = self.out.readline().strip()

    def reports(self, n: int) -> list[tuple[float, float]]:
        """The next n ``last K steps`` reports: (step us, poll us)."""
        found = []
        while len(found) < n:
            line = self.out.readline()
            if not line:
                raise RuntimeError("heat ended early")
            if line.startswith("heat: last"):
                words = line.replace(",", "").split()
                found.append((float(words[5]), float(words[8])))
        return found

    def client(self) -> BlockingKernelClient:
        assert self.connection_file is not None
        kc = BlockingKernelClient(connection_file=self.connection_file)
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        return kc

    def rank_pids(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmd[0] == str(self.binary).encode() and self.name.encode() in cmd:
                    pids.append(int(entry))
        return pids

    def end(self) -> None:
        if self.proc.poll() is None and self.connection_file is not None:
            try:
                kc = self.client()
                kc.execute_interactive("nsteps = int(step) + 1", timeout=30)
                kc.stop_channels()
                self.proc.wait(timeout=30)
            except Exception:
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait()
        self.out.close()


def cpu_by_thread(pid: int) -> dict[int, float]:
    result = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        result[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return result


def step_times(binary: Path, args: argparse.Namespace) -> dict[str, Any]:
    common = ["--nx", str(args.nx), "--ny", str(args.nx), "--sleep-ms", "0"]
    common += ["--steps", "100000000", "--report", str(args.block)]
    runs: dict[str, list[float]] = {"no kernel": [], "kernel, no client": [], "idle client": []}
    polls: list[float] = []
    for _ in range(args.reps):
        for config in runs:
            heat = Heat(binary, args.ranks, *common, kernel=config != "no kernel")
            try:
                heat.reports(2)  # warm-up
                if config == "idle client":
                    kc = heat.client()
                    heat.reports(1)
                    got = heat.reports(args.blocks)
                    kc.stop_channels()
                else:
                    got = heat.reports(args.blocks)
                runs[config].append(statistics.median(s for s, _ in got))
                if config == "kernel, no client":
                    polls.append(statistics.median(p for _, p in got))
            finally:
                heat.end()
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "step_us": med,
        "poll_us": statistics.median(polls),
        "ratio_kernel_vs_none": med["kernel, no client"] / med["no kernel"],
        "ratio_idle_client_vs_kernel": med["idle client"] / med["kernel, no client"],
        "runs_us": runs,
    }


def idle_and_latency(binary: Path, args: argparse.Namespace) -> dict[str, Any]:
    common = ["--nx", str(args.nx), "--ny", str(args.nx), "--sleep-ms", "10"]
    heat = Heat(binary, args.ranks, *common, "--steps", "100000000")
    try:
        kc = heat.client()
        pids = heat.rank_pids()

        def clock_cell() -> tuple[int, float]:
            out: list[str] = []

            def keep(msg: dict[str, Any]) -> None:
                if msg["msg_type"] == "stream" and msg["content"]["text"].startswith("[rank 0]"):
                    out.append(msg["content"]["text"])

            code = "_t = __import__('time').time()\nif rank == 0: print(int(step), repr(_t))"
            kc.execute_interactive(code, timeout=60, output_hook=keep)
            step, t = out[0].split()[2:4]
            return int(step), float(t)

        time.sleep(1.0)
        before = {pid: cpu_by_thread(pid) for pid in pids}
        s0, t0 = clock_cell()
        time.sleep(args.idle)
        s1, t1 = clock_cell()
        after = {pid: cpu_by_thread(pid) for pid in pids}
        interval_ms = 1000 * (t1 - t0) / (s1 - s0)
        kernel_pct, main_pct = [], []
        span = args.idle
        for pid in pids:
            threads = after[pid]
            kernel_cpu = sum(threads[t] - before[pid].get(t, 0.0) for t in threads if t != pid)
            kernel_pct.append(100 * kernel_cpu / span)
            main_pct.append(100 * (threads[pid] - before[pid][pid]) / span)
        latencies = []
        for _ in range(args.cells):
            time.sleep(random.uniform(0, 0.05))
            sent = time.time()
            _, started = clock_cell()
            latencies.append(1000 * (started - sent))
        kc.stop_channels()
        latencies.sort()
        return {
            "poll_interval_ms": interval_ms,
            "kernel_threads_cpu_pct_per_rank": kernel_pct,
            "main_thread_cpu_pct_per_rank": main_pct,
            "latency_ms": {
                "p50": statistics.median(latencies),
                "p95": latencies[int(0.95 * (len(latencies) - 1))],
                "max": latencies[-1],
            },
        }
    finally:
        heat.end()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--nx", type=int, default=256, help="grid size (nx = ny)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--block", type=int, default=500, help="steps per report")
    parser.add_argument("--blocks", type=int, default=4, help="reports measured per run")
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="insitu-bench-") as build:
        env = {**os.environ, "PYTHON": sys.executable}
        out = subprocess.run(
            [str(ROOT / "examples" / "insitu" / "build"), build],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        binary = Path(out.split()[-1])
        steps = step_times(binary, args)
        idle = idle_and_latency(binary, args)
    print(f"in-situ heat, {args.ranks} ranks, {args.nx}x{args.nx}, load {os.getloadavg()[0]:.1f}")
    for config, us in steps["step_us"].items():
        print(f"  step time, {config:18s} {us:9.1f} us")
    print(f"  collective poll per step      {steps['poll_us']:9.2f} us")
    print(f"  kernel vs no kernel           {steps['ratio_kernel_vs_none']:9.3f}")
    print(f"  idle client vs no client      {steps['ratio_idle_client_vs_kernel']:9.3f}")
    cpu = ", ".join(f"{p:.2f}" for p in idle["kernel_threads_cpu_pct_per_rank"])
    print(f"  kernel threads CPU, idle      {cpu} % of a core (per rank)")
    lat = idle["latency_ms"]
    print(
        f"  execute -> cell start         p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, "
        f"max {lat['max']:.1f} ms; poll interval {idle['poll_interval_ms']:.1f} ms"
    )
    print(json.dumps({"ranks": args.ranks, "nx": args.nx, **steps, **idle}))


if __name__ == "__main__":
    main()
