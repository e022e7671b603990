"""What a kernel costs the in-situ simulation (examples/insitu/heat.c, issue 11).

``python benchmarks/insitu.py [--ranks 2] [--nx 1024] [--reps 5] [--cells 40] [--idle 10]``

Builds heat into a temporary directory (examples/insitu/build) and measures, on ``--ranks``
ranks of the mpich wheel's mpiexec:

- the cost of a kernel to a compute-bound simulation (no sleep between steps; ``--nx`` 1024
  makes a step about 1-3 ms on 2 ranks, as a real simulation's would be): without a kernel
  (``--no-kernel``), with a kernel and no client, with a client attached and idle, the three
  interleaved ``--reps`` times. For each run, over ``--blocks`` blocks of ``--block`` steps:
  the wall time of a step (heat's own ``--report``: exchange + update + poll, the slowest
  rank's mean, and of that the poll's, which is mostly waiting for the slower rank) and the
  CPU time per step of every thread of every rank (``/proc/<pid>/task/*/schedstat``, ns),
  split into the ranks' main threads (the simulation, the poll included) and all their other
  threads (the kernel's, ZeroMQ's, MPI's). Reported: medians over the reps, the ratios to the
  run without a kernel (on a shared machine, other processes move both by more than the
  costs measured here), and the **kernel's share** of a step: the poll's own cost (next item)
  plus the kernel threads' CPU per step and rank, over the step time without a kernel;
- the collective poll alone: ``benchmarks/insitu_poll.c`` (built with mpicc) calls
  ``ksdk_poll`` ``--polls`` times on every rank, then as many bare 8-byte ``MPI_Bcast`` (the
  poll's floor), 7 rounds alternately; the minimum and median ns per call;
- the kernel threads' CPU while a client is attached and idle (every thread of each rank but
  its main one, over ``--idle`` seconds, in % of one core, and their wake-ups per second),
  with 10 ms steps;
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
CONFIGS = ("no kernel", "kernel, no client", "idle client")


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


def threads(pid: int) -> dict[int, tuple[float, int]]:
    """Each thread of ``pid``: seconds on a CPU (schedstat, ns precision) and voluntary
    context switches (its wake-ups, near enough)."""
    result = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text()
        except OSError:
            continue
        switches = next(
            int(line.split()[1])
            for line in status.splitlines()
            if line.startswith("voluntary_ctxt_switches")
        )
        result[int(task.name)] = (ns / 1e9, switches)
    return result


def cpu_split(
    pids: list[int],
    before: dict[int, dict[int, tuple[float, int]]],
    after: dict[int, dict[int, tuple[float, int]]],
) -> tuple[list[float], list[float], list[float]]:
    """Per rank: CPU seconds of the main thread, of all other threads, and the other threads'
    wake-ups, between two snapshots."""
    main, other, wakeups = [], [], []
    for pid in pids:
        old, new = before[pid], after[pid]
        main.append(new[pid][0] - old[pid][0])
        others = [t for t in new if t != pid]
        other.append(sum(new[t][0] - old.get(t, (0.0, 0))[0] for t in others))
        wakeups.append(float(sum(new[t][1] - old.get(t, (0.0, 0))[1] for t in others)))
    return main, other, wakeups


def step_costs(binary: Path, args: argparse.Namespace) -> dict[str, Any]:
    common = ["--nx", str(args.nx), "--ny", str(args.nx), "--sleep-ms", "0"]
    common += ["--steps", "100000000", "--report", str(args.block)]
    steps = args.block * args.blocks
    wall: dict[str, list[float]] = {c: [] for c in CONFIGS}
    poll_us: dict[str, list[float]] = {c: [] for c in CONFIGS}
    threads_us: dict[str, list[float]] = {c: [] for c in CONFIGS}
    main_us: dict[str, list[float]] = {c: [] for c in CONFIGS}
    other_us: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for _ in range(args.reps):
        for config in CONFIGS:
            heat = Heat(binary, args.ranks, *common, kernel=config != "no kernel")
            try:
                kc = heat.client() if config == "idle client" else None
                heat.reports(2)  # warm-up
                pids = heat.rank_pids()
                before = {pid: threads(pid) for pid in pids}
                got = heat.reports(args.blocks)
                after = {pid: threads(pid) for pid in pids}
                if kc is not None:
                    kc.stop_channels()
                main, other, _ = cpu_split(pids, before, after)
                wall[config].append(statistics.median(s for s, _ in got))
                poll_us[config].append(statistics.median(p for _, p in got))
                threads_us[config].append(1e6 * sum(other) / len(pids) / steps)
                # Per step, summed over the ranks (the whole job's CPU for one step).
                main_us[config].append(1e6 * sum(main) / steps)
                other_us[config].append(1e6 * sum(other) / steps)
            finally:
                heat.end()
    med = {
        c: {
            "wall_step_us": statistics.median(wall[c]),
            "poll_wall_us": statistics.median(poll_us[c]),
            "threads_cpu_us_per_rank": statistics.median(threads_us[c]),
            "main_cpu_us": statistics.median(main_us[c]),
            "other_cpu_us": statistics.median(other_us[c]),
            "total_cpu_us": statistics.median(
                m + o for m, o in zip(main_us[c], other_us[c], strict=True)
            ),
        }
        for c in CONFIGS
    }
    base = med["no kernel"]
    ratios = {
        c: {k: med[c][k] / base[k] for k in ("wall_step_us", "total_cpu_us")} for c in CONFIGS[1:]
    }
    return {
        "nx": args.nx,
        "steps_per_run": steps,
        "median": med,
        "ratio_to_no_kernel": ratios,
        "runs": {
            "wall_step_us": wall,
            "poll_wall_us": poll_us,
            "main_cpu_us": main_us,
            "other_cpu_us": other_us,
        },
    }


def poll_cost(build: str, args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/insitu_poll.c: ns per collective ksdk_poll with nothing to run, and per bare
    8-byte MPI_Bcast (the poll's floor), alternately, the slowest rank's."""
    flags = subprocess.run(
        [sys.executable, "-m", "kernelsdk", "config", "--cflags", "--ldflags"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    binary = Path(build) / "insitu_poll"
    source = ROOT / "benchmarks" / "insitu_poll.c"
    mpicc = [str(BIN / "mpicc"), "-O2", "-Wall", "-Wextra", str(source)]
    subprocess.run([*mpicc, *flags, "-o", str(binary)], check=True)
    out = subprocess.run(
        [str(BIN / "mpiexec"), "-n", str(args.ranks), str(binary), str(args.polls), "7"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    found = {}
    for line in out.splitlines():
        words = line.replace(",", "").split()
        found[words[0]] = (float(words[words.index("min") + 1]), float(words[-2]))
    (poll_min, poll_med), (bcast_min, bcast_med) = found["ksdk_poll"], found["MPI_Bcast"]
    return {
        "poll_ns": {"min": poll_min, "median": poll_med},
        "bcast_ns": {"min": bcast_min, "median": bcast_med},
    }


def idle_and_latency(binary: Path, args: argparse.Namespace) -> dict[str, Any]:
    common = ["--nx", "256", "--ny", "256", "--sleep-ms", "10"]
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

        s0, t0 = clock_cell()
        time.sleep(2.0)  # the worker ranks' kernel threads settle into their idle sleep
        before = {pid: threads(pid) for pid in pids}
        started = time.monotonic()
        time.sleep(args.idle)
        after = {pid: threads(pid) for pid in pids}
        span = time.monotonic() - started
        s1, t1 = clock_cell()
        interval_ms = 1000 * (t1 - t0) / (s1 - s0)
        main, other, wakeups = cpu_split(pids, before, after)
        latencies = []
        for _ in range(args.cells):
            time.sleep(random.uniform(0, 0.05))
            sent = time.time()
            _, began = clock_cell()
            latencies.append(1000 * (began - sent))
        kc.stop_channels()
        latencies.sort()
        return {
            "poll_interval_ms": interval_ms,
            "kernel_threads_cpu_pct_per_rank": [100 * c / span for c in other],
            "kernel_threads_wakeups_per_s_per_rank": [w / span for w in wakeups],
            "main_thread_cpu_pct_per_rank": [100 * c / span for c in main],
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
    parser.add_argument("--nx", type=int, default=1024, help="grid size (nx = ny)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--block", type=int, default=200, help="steps per report")
    parser.add_argument("--blocks", type=int, default=5, help="reports measured per run")
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--polls", type=int, default=100000, help="calls per round")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle client")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
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
        costs = step_costs(binary, args)
        poll = poll_cost(build, args)
        idle = idle_and_latency(binary, args)
    load = f"load {load0:.1f} -> {os.getloadavg()[0]:.1f}"
    print(f"in-situ heat, {args.ranks} ranks, {args.nx}x{args.nx}, {args.reps} reps, {load}")
    p, b = poll["poll_ns"], poll["bcast_ns"]
    # What a kernel takes from each rank's step: its poll (the microbenchmark's median, which
    # heat's own poll time cannot show: that is mostly waiting for the slower rank, which the
    # next halo exchange would wait without a kernel) and its threads' CPU.
    base_step = costs["median"]["no kernel"]["wall_step_us"]
    shares = {
        c: (p["median"] / 1000 + costs["median"][c]["threads_cpu_us_per_rank"]) / base_step
        for c in CONFIGS[1:]
    }
    print(
        f"  {'per step':20s} {'wall':>10s} {'main CPU':>10s} {'other CPU':>10s}"
        f" {'poll wait':>10s} {'kernel share':>13s}"
    )
    for config, m in costs["median"].items():
        print(
            f"  {config:20s} {m['wall_step_us']:8.1f}us {m['main_cpu_us']:8.1f}us "
            f"{m['other_cpu_us']:8.2f}us {m['poll_wall_us']:8.1f}us "
            f"{100 * shares.get(config, 0.0):12.3f}%"
        )
    for config, r in costs["ratio_to_no_kernel"].items():
        print(
            f"  {config:20s} x{r['wall_step_us']:.4f} wall, x{r['total_cpu_us']:.4f} CPU "
            "(of the run without a kernel)"
        )
    print(
        f"  collective ksdk_poll, idle    min {p['min']:.0f} ns, median {p['median']:.0f} ns "
        f"(MPI_Bcast alone: min {b['min']:.0f} ns, median {b['median']:.0f} ns)"
    )
    cpu = ", ".join(f"{p:.3f}" for p in idle["kernel_threads_cpu_pct_per_rank"])
    wake = ", ".join(f"{w:.1f}" for w in idle["kernel_threads_wakeups_per_s_per_rank"])
    print(f"  kernel threads CPU, idle      {cpu} % of a core; wake-ups/s {wake} (per rank)")
    lat = idle["latency_ms"]
    print(
        f"  execute -> cell start         p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, "
        f"max {lat['max']:.1f} ms; poll interval {idle['poll_interval_ms']:.1f} ms"
    )
    summary = {"ranks": args.ranks, **costs, **poll, **idle, "kernel_share": shares}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
